//! `deploy-agent` run as an admin command on a data directory (init, user, group).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::agent_bin;

/// Runs `deploy-agent --data-dir DIR ARGS...` (init, user, group) and returns its stdout;
/// panics with its output when it fails.
pub fn agent_admin(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(agent_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running deploy-agent");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deploy-agent {args:?} failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The token a `deploy-agent init` / `user add` printed (the `dat_...` word).
pub fn token_in(output: &str) -> String {
    output
        .split_whitespace()
        .find(|w| w.starts_with("dat_"))
        .unwrap_or_else(|| panic!("no token in {output:?}"))
        .trim_matches('\'')
        .to_string()
}
