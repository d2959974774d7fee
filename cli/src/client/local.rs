//! The built-in `local` env: its agent's address, and starting `deploy-agent` in the
//! background when nothing answers there.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context;

use crate::error::bad_input;

/// The built-in local agent's address (`DEPLOYCTL_LOCAL_ADDRESS`, default 127.0.0.1:7070).
pub(crate) fn local_address() -> String {
    std::env::var("DEPLOYCTL_LOCAL_ADDRESS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "127.0.0.1:7070".to_string())
}

/// The data directory of the auto-started local agent. As root it is not under root's
/// home: the agent runs each app as its own user, who must reach its release.
pub(crate) fn local_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DEPLOYCTL_LOCAL_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/deploy-agent-local");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("deploy-agent");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/deploy-agent"),
        None => std::env::temp_dir().join("deploy-agent"),
    }
}

/// `deploy-agent` next to this executable, else on PATH.
fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DEPLOYCTL_AGENT_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("deploy-agent")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("deploy-agent"))
}

/// Starts the local agent detached (own session: it outlives this command and the
/// terminal), logging to `<data dir>/agent.log`.
pub(super) fn start_local_agent(address: &str) -> anyhow::Result<()> {
    let hostport = address.trim_start_matches("http://");
    let (host, port) = hostport
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
        .ok_or_else(|| bad_input(format!("local agent address {address:?} is not HOST:PORT")))?;
    let data_dir = local_data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let log_path = data_dir.join("agent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_err = log.try_clone().context("opening agent log")?;
    let bin = agent_binary();
    let http_port = port.checked_add(1).unwrap_or(0);
    let child = std::process::Command::new(&bin)
        .arg("--listen")
        .arg(format!("{host}:{port}"))
        .arg("--http-listen")
        .arg(format!("{host}:{http_port}"))
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--app-host")
        .arg(&host)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .spawn()
        .with_context(|| {
            format!(
                "nothing answers at {address} and starting {} failed; install deploy-agent next to deployctl or on PATH",
                bin.display()
            )
        })?;
    eprintln!(
        "No agent answered at {address}: started a local deploy-agent (pid {}), data in {}, log in {}",
        child.id(),
        data_dir.display(),
        log_path.display()
    );
    Ok(())
}

/// The pids of `deploy-agent` processes serving the local agent's data directory (what
/// `deployctl` auto-started, or one started by hand with the same `--data-dir`).
pub(crate) fn local_agent_pids() -> Vec<u32> {
    let data_dir = local_data_dir();
    let want = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_agent = args
            .first()
            .is_some_and(|a| a.ends_with("deploy-agent"))
            // Not its node proxy (`deploy-agent proxy ...`): the agent itself.
            && args.get(1).map(String::as_str) != Some("proxy");
        let dir = args
            .iter()
            .position(|a| a == "--data-dir")
            .and_then(|i| args.get(i + 1))
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| PathBuf::from(d)));
        if is_agent && dir.as_ref() == Some(&want) {
            pids.push(pid);
        }
    }
    pids
}
