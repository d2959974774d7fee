//! The Unix users an agent running as root makes for its deployments (`deploy-app-UID`,
//! home in its data directory): what a test checks, and what it deletes when it ends.

use std::fs;
use std::path::Path;

/// Deletes the users the agent made for its deployments (homes in `data_dir`) that a test
/// left behind (a deployment it did not remove): `/etc/passwd` is the node's, not the test's.
pub fn free_app_users(data_dir: &Path) {
    for (user, _uid) in app_users_of(data_dir) {
        let _ = std::process::Command::new("userdel")
            .args(["-f", &user])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("groupdel")
            .arg(&user)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The users (name, uid) the agent made for deployments whose home is in `data_dir`.
pub fn app_users_of(data_dir: &Path) -> Vec<(String, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (name, uid, home) = (f.first()?, f.get(2)?, f.get(5)?);
            (name.starts_with("deploy-app-") && Path::new(home).starts_with(data_dir))
                .then(|| Some((name.to_string(), uid.parse().ok()?)))
                .flatten()
        })
        .collect()
}
