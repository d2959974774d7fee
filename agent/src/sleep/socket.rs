//! The agent's wake socket (`DATA/proxy/wake.sock`, the agent's user only): the node proxy
//! asks here for a sleeping deployment to be woken, one JSON line per question, and the
//! answer comes once the wake is over ([`crate::proxy::wake`] has the proxy's side).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::proxy::wake::{WakeReply, WakeRequest};
use crate::supervisor::Supervisor;

/// The longest question taken.
const MAX_LINE: u64 = 4096;

/// Serves the wake socket at `path` until the agent stops.
pub(crate) async fn serve(sup: Arc<Supervisor>, path: PathBuf) {
    if let Some(dir) = path.parent() {
        let dir = dir.to_path_buf();
        let made = tokio::task::spawn_blocking(move || {
            crate::fsmode::create_dir(&dir, crate::fsmode::PRIVATE_DIR)
        })
        .await;
        if let Ok(Err(e)) = made {
            tracing::error!(socket = %path.display(), error = %e, "cannot make the wake socket's directory");
        }
    }
    let _ = tokio::fs::remove_file(&path).await;
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(socket = %path.display(), error = %e, "cannot listen for the node proxy's wake requests: sleeping deployments will not wake");
            return;
        }
    };
    crate::auth::set_mode(&path, 0o600);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(sup.clone(), stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "wake socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads one question, wakes the deployment, answers.
async fn answer(sup: Arc<Supervisor>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if let Err(e) = BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await
    {
        tracing::warn!(error = %e, "reading a wake request");
        return;
    }
    let reply = match serde_json::from_str::<WakeRequest>(line.trim()) {
        Ok(req) => match sup.wake(&req.name, req.listen).await {
            Ok(()) => WakeReply {
                ok: true,
                ..Default::default()
            },
            Err((error, retry)) => WakeReply {
                ok: false,
                error,
                retry_after_s: retry.as_secs().max(1),
            },
        },
        Err(e) => WakeReply {
            ok: false,
            error: format!("a wake request the agent cannot read ({e})"),
            retry_after_s: 1,
        },
    };
    let mut out = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
    out.push('\n');
    if let Err(e) = write.write_all(out.as_bytes()).await {
        tracing::debug!(error = %e, "the node proxy left before the wake's answer");
    }
}
