//! Waking a sleeping deployment: a route set `sleeping` (its app stopped after
//! `idle_timeout`) keeps its port open; the first request that finds no backend asks the
//! agent to wake it, over the agent's wake socket (`DATA/proxy/wake.sock`, the agent's
//! user only), and waits — with every request that follows — up to the route's
//! `wake_timeout` for the route to get its backends back. One question per route at a time;
//! the agent answers when the wake is over.
//!
//! ```text
//! proxy -> agent  {"listen":"10.0.0.5:8000","name":"iris"}
//! agent -> proxy  {"ok":true}
//!             or  {"ok":false,"error":"release 3 did not start: ...","retry_after_s":10}
//! ```
//!
//! A wake that failed is remembered for its `retry_after_s`: requests meanwhile are answered
//! 503 at once, with `Retry-After` and the reason, instead of starting the app again and
//! again. An agent that is not running (restarting) is asked again until the wake timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The agent's wake socket, next to the control socket.
static SOCKET: OnceLock<PathBuf> = OnceLock::new();

/// How often the agent is asked again while it does not listen.
const RETRY: Duration = Duration::from_millis(100);
/// What a client is told to wait when the agent could not be asked.
const NO_AGENT_RETRY: Duration = Duration::from_secs(5);

/// The wake socket beside `control` (`DATA/proxy/control.sock` → `DATA/proxy/wake.sock`).
pub(crate) fn socket_beside(control: &Path) -> PathBuf {
    control.with_file_name("wake.sock")
}

/// The proxy asks the agent on `path` from now on (once, at start).
pub(super) fn set_socket(path: PathBuf) {
    let _ = SOCKET.set(path);
}

/// What the proxy sends.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WakeRequest {
    pub listen: SocketAddr,
    pub name: String,
}

/// What the agent answers once the wake is over.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct WakeReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// How long the proxy answers 503 before it asks again (failed wakes).
    #[serde(default)]
    pub retry_after_s: u64,
}

/// A route's wake: whether a question is out, and the last failure while it lasts.
#[derive(Debug, Default)]
pub(crate) struct WakeState {
    asking: AtomicBool,
    failed: Mutex<Option<Failed>>,
}

#[derive(Debug, Clone)]
struct Failed {
    reason: String,
    until: Instant,
}

impl WakeState {
    /// Asks the agent to wake `name` (served on `listen`) unless a question is out already
    /// or a failure still holds; the answer comes to this state.
    pub(crate) fn start(self: &Arc<Self>, listen: SocketAddr, name: &str, within: Duration) {
        if self.failure().is_some() || self.asking.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let answer = ask(listen, &name, within).await;
            if let Err((reason, retry)) = answer {
                tracing::warn!(deployment = %name, %listen, reason = %reason, "the deployment did not wake");
                *me.lock() = Some(Failed {
                    reason,
                    until: Instant::now() + retry,
                });
            }
            me.asking.store(false, Ordering::Release);
        });
    }

    /// The last failed wake and how long it still holds, while it does.
    pub(crate) fn failure(&self) -> Option<(String, Duration)> {
        let mut failed = self.lock();
        let left = failed
            .as_ref()
            .map(|f| f.until.saturating_duration_since(Instant::now()))?;
        if left.is_zero() {
            *failed = None;
            return None;
        }
        failed.as_ref().map(|f| (f.reason.clone(), left))
    }

    /// The deployment is awake (or set again): no failure holds.
    pub(crate) fn clear(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failed>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Asks the agent to wake `name` and waits for its answer: `Err` with the reason and how
/// long to wait before asking again.
async fn ask(listen: SocketAddr, name: &str, within: Duration) -> Result<(), (String, Duration)> {
    let Some(path) = SOCKET.get() else {
        return Err((
            "the node proxy does not know the agent's wake socket".into(),
            NO_AGENT_RETRY,
        ));
    };
    let deadline = Instant::now() + within;
    let stream = loop {
        match UnixStream::connect(path).await {
            Ok(s) => break s,
            Err(e) if Instant::now() + RETRY < deadline => {
                tracing::debug!(error = %e, "the agent's wake socket does not answer yet");
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => {
                return Err((
                    format!(
                        "the agent is not running, so nothing can wake the app ({}: {e})",
                        path.display()
                    ),
                    NO_AGENT_RETRY,
                ))
            }
        }
    };
    let lost = |e: std::io::Error| {
        (
            format!("the agent stopped while it woke the app ({e})"),
            NO_AGENT_RETRY,
        )
    };
    let mut line = serde_json::to_string(&WakeRequest {
        listen,
        name: name.to_string(),
    })
    .map_err(|e| (format!("the wake request: {e}"), NO_AGENT_RETRY))?;
    line.push('\n');
    let (read, mut write) = stream.into_split();
    write.write_all(line.as_bytes()).await.map_err(lost)?;
    let mut answer = String::new();
    // The agent answers when the wake is over, however long the app takes to start.
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(lost)?;
    if answer.is_empty() {
        return Err(lost(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let reply: WakeReply = serde_json::from_str(answer.trim()).map_err(|e| {
        (
            format!("the agent's answer {answer:?}: {e}"),
            NO_AGENT_RETRY,
        )
    })?;
    if reply.ok {
        return Ok(());
    }
    Err((reply.error, Duration::from_secs(reply.retry_after_s.max(1))))
}
