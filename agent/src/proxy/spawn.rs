//! Starting the node proxy: `deploy-agent proxy` in a session of its own (it outlives the
//! agent), its output to `proxy.log`, the listening sockets the agent holds inherited
//! (`--listen-fd N`, one per socket), its threads (`--threads N`, the agent's
//! `proxy_threads`), and its pid and start time in `proxy.pid`.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::procstat::ProcId;

/// The agent's own binary: after an upgrade replaced it on disk (install.sh, a rebuild),
/// `/proc/self/exe` names the old one "PATH (deleted)"; the new one at PATH is started.
fn running_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    match text.strip_suffix(" (deleted)") {
        Some(path) if Path::new(path).is_file() => Ok(PathBuf::from(path)),
        _ => Ok(exe),
    }
}

/// Starts the proxy from `dir` with `sockets` (duplicates, closed here once it has them).
pub(super) fn detached(
    dir: &Path,
    sockets: Vec<OwnedFd>,
    threads: Option<usize>,
) -> Result<ProcId, String> {
    let fail = |what: &str, e: std::io::Error| format!("{what}: {e}");
    crate::fsmode::create_dir(dir, crate::fsmode::PRIVATE_DIR)
        .map_err(|e| fail(&format!("creating {}", dir.display()), e))?;
    let exe = running_binary().map_err(|e| fail("finding deploy-agent", e))?;
    let log = crate::fsmode::append_private(&dir.join("proxy.log"))
        .map_err(|e| fail("opening proxy.log", e))?;
    let err = log.try_clone().map_err(|e| fail("opening proxy.log", e))?;
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut cmd = Command::new(exe);
    cmd.arg("proxy")
        .arg("--control")
        .arg(dir.join("control.sock"))
        .arg("--routes")
        .arg(dir.join("routes.json"));
    for fd in &fds {
        cmd.arg("--listen-fd").arg(fd.to_string());
    }
    if let Some(n) = threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: setsid and fcntl are async-signal-safe; nothing else runs between fork and
    // exec. The sockets stay open across exec in the child only.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            super::fdpass::inherit(&fds)
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| fail("starting the node proxy", e))?;
    drop(sockets);
    let pid = child.id();
    // Not waited for here: the watch reaps it when it exits (or the reaper does).
    drop(child);
    let id = ProcId::of(pid).ok_or_else(|| "the node proxy exited at once".to_string())?;
    crate::fsmode::write_atomic(
        &dir.join("proxy.pid"),
        format!("{} {}\n", id.pid, id.start_time).as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    Ok(id)
}
