//! Helpers for the end-to-end tests: they run the real `deploy-agent` and `deployctl`
//! binaries against real git repositories holding small stdlib-Python apps.
//!
//! * [`Agent`] starts `deploy-agent` on its own loopback address with its own data dir and
//!   kills it, and every app it started, when dropped (apps outlive the agent by design).
//! * [`Project`] is a temporary `--project` directory for `deployctl`.
//! * [`GitRepo`] makes a git repository with the git CLI.
//! * [`Etcd`] runs a real etcd on a loopback address (the etcd state backend).
//! * [`Moto`] runs moto's S3-compatible server on a loopback address (S3 state, artifacts).
//! * [`ModelServer`] serves model files over HTTP (artifacts), logging every request.
//! * [`Relay`] relays TCP to an agent and can break every connection through it.
//! * [`http_get`], [`http_post`] and [`wait_until`]: deadlines and polling, never sleeps
//!   used as synchronisation.
//!
//! Build the binaries first (`cargo build --workspace`): the tests look for them next to the
//! test executable, in the cargo target directory, like habitat's tests do.
//!
//! # Loopback addresses
//!
//! Every test runs its agents and apps on loopback addresses of its own, taken from
//! [`loopback`], so tests (and several checkouts' test runs) can run in parallel and all use
//! port 8000 for their apps. An address is held by an exclusive lock on a file under the
//! temporary directory until its [`Loopback`] is dropped.

mod admin;
mod agent;
mod apps;
mod cleanup;
mod etcd;
mod git;
mod haproxy;
mod http;
mod load;
mod loopback;
mod model_server;
mod moto;
mod node_proxy;
mod project;
mod prom;
pub mod readme;
mod relay;
mod secure;
mod setups;
mod sockets;
mod tmpfs;
mod users;

pub use admin::{agent_admin, token_in};
pub use agent::{strip_ansi, tail, Agent};
pub use apps::{
    app_py, APP_PY, CRASH_AFTER_PY, EXIT_AT_ONCE_PY, FLOOD_PY, HOG_PY, NEVER_HEALTHY_PY, SPIN_PY,
};
pub use etcd::Etcd;
pub use git::GitRepo;
pub use haproxy::{HaProxy, Server};
pub use http::{
    get_json, http_get, http_get_or_why, http_get_with, http_post, http_request, http_request_with,
    wait_for_json, Answer, NoAnswer,
};
pub use load::{Load, Seen};
pub use loopback::{loopback, Loopback};
pub use model_server::{tar_gz, ModelServer};
pub use moto::Moto;
pub use node_proxy::signal;
pub use project::{Output, Project};
pub use prom::{parse_metrics, scrape_metrics, Family, Sample, PROMETHEUS_ACCEPT};
pub use relay::Relay;
pub use secure::{secure_agent, Secure};
pub use setups::{check_status_shape, fast_run_args, iris_deployed};
pub use sockets::{closed_by_peer, connect_from, open_files_limit, set_open_files_soft_limit};
pub use tmpfs::Tmpfs;
pub use users::{app_users_of, free_app_users};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a `deployctl` command may take before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The same for commands that install Python packages.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(400);

// Binaries

/// The cargo target directory of this build (`target/debug`): the test executable lives in
/// `target/debug/deps/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable's path");
    let mut dir = exe
        .parent()
        .expect("test executable has no parent")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn binary(name: &str, env_override: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_override) {
        return PathBuf::from(p);
    }
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{name} not found at {}: run cargo build first (cargo build --workspace), or set {env_override}",
        path.display()
    );
    path
}

/// `deploy-agent` (override with `DEPLOY_AGENT_BIN`).
pub fn agent_bin() -> PathBuf {
    binary("deploy-agent", "DEPLOY_AGENT_BIN")
}

/// `deployctl` (override with `DEPLOYCTL_BIN`).
pub fn deployctl_bin() -> PathBuf {
    binary("deployctl", "DEPLOYCTL_BIN")
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
}

// Polling

/// Polls `cond` every 50 ms until it holds (true) or `deadline` has passed (false).
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) STATE ...": the command may contain spaces and parentheses.
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

// Tools and privileges the tests need

/// The SHA-256 of a file (hex), by coreutils' sha256sum: what an artifact pins.
pub fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The path of `tool` (on PATH, or in /usr/sbin and /usr/local/sbin where Debian puts
/// daemons). A missing tool fails the test, naming it and how to install it: a test never
/// skips and reports "ok" (scripts/test.sh installs every tool the tests use).
pub fn require_tool(tool: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not installed: it comes with {install}"))
}

/// Fails the test unless it runs as root (as scripts/test.sh and CI do), saying why root is
/// needed.
/// A directory the test shares with its apps, which run as their own users with a private
/// `/tmp`: outside `/tmp`, and anyone may create files in it (1777, like `/tmp`).
pub fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("deployctl-e2e-shared-")
        .tempdir_in("/var/tmp")
        .expect("a directory in /var/tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("opening the shared directory to the apps' users");
    dir
}

pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: {why} (scripts/test.sh runs as root in CI)"
    );
}
