//! Each deployment's own Unix identity. When the agent runs as root, every deployment runs
//! as a user and group of its own, taken from `app_uids` (default 61184-65519, the range
//! systemd gives dynamic users): its releases, replicas, restarts, start script and `exec`
//! share it, no other deployment ever has it, it is never root, and `remove` frees it.
//!
//! The identity is a real user (`useradd`, name `deploy-app-<uid>`, home the deployment's
//! `DATA_DIR`, no login shell), because apps ask who they are (`getpwuid`: MLflow's run
//! tags, matplotlib's and Hugging Face's caches) and fail on a bare numeric uid. The name
//! says nothing of the deployment: other owners' apps can read `/etc/passwd`. `/etc/passwd`
//! is also the registry: a uid is free when no user or group has it, and `useradd` takes
//! it under the system's own lock, so two agents on one node never take the same one.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// A Unix user and group apps run as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
}

/// The default `app_uids`: the range systemd uses for dynamic users.
pub(crate) const DEFAULT_RANGE: (u32, u32) = (61184, 65519);

/// The name prefix of the users the agent makes.
const USER_PREFIX: &str = "deploy-app-";

/// Marks the users the agent made in `/etc/passwd`'s comment field.
const COMMENT: &str = "deployctl app";

/// Parses `app_uids` ("61184-65519").
pub(crate) fn parse_range(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a range FIRST-LAST, e.g. \"61184-65519\""))?;
    let first: u32 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a uid"))?;
    let last: u32 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a uid"))?;
    if first == 0 || first > last {
        return Err(format!(
            "{text:?}: the range must be non-empty and must not include 0 (root)"
        ));
    }
    if first < 1000 {
        return Err(format!(
            "{text:?}: uids below 1000 belong to the system's own users"
        ));
    }
    Ok((first, last))
}

/// The user named `name` on this node (`run_as`).
pub(crate) fn lookup(name: &str) -> Option<Identity> {
    let u = nix::unistd::User::from_name(name).ok().flatten()?;
    Some(Identity {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        user: u.name,
    })
}

/// Whether `id` is still a user of this node with that uid (a reinstalled node may have
/// lost `/etc/passwd`'s entry).
fn exists(id: &Identity) -> bool {
    matches!(
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id.uid)),
        Ok(Some(u)) if u.name == id.user
    )
}

/// A uid nobody has: no user, no group with it.
fn unused(uid: u32) -> bool {
    matches!(
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Ok(None)
    ) && matches!(
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(uid)),
        Ok(None)
    )
}

/// One allocation at a time in this agent; [`node_lock`] keeps the node's other agents apart.
static ALLOCATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where every agent on the node takes turns at `/etc/passwd` (the first directory that
/// exists).
const NODE_LOCKS: [&str; 2] = ["/run/lock", "/run"];

/// Held while this agent changes the node's users: one agent at a time. `useradd` locks
/// `/etc/passwd` itself, but when it finds it locked it sleeps a whole second before it
/// tries again: with agents deploying at once on one node (tests, benches, several agents
/// per machine) most of a deploy went by in those sleeps. A kernel lock is handed over the
/// moment it is released. `None` (no lock directory): `useradd`'s own lock still keeps
/// them correct.
fn node_lock() -> Option<nix::fcntl::Flock<std::fs::File>> {
    let dir = NODE_LOCKS.iter().find(|d| Path::new(d).is_dir())?;
    let path = Path::new(dir).join("deploy-agent-users.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| tracing::debug!(file = %path.display(), error = %e, "no node lock for users"))
        .ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(
            |(_, e)| tracing::debug!(file = %path.display(), error = %e, "no node lock for users"),
        )
        .ok()
}

/// A new identity from `range`, its home `home` (made by the caller). `recorded`: the
/// identity the deployment's record names, made again with the same uid if the node lost
/// it. Blocking: runs `useradd`.
pub(crate) fn ensure(
    range: (u32, u32),
    recorded: Option<&Identity>,
    home: &Path,
) -> Result<Identity, String> {
    let _one = ALLOCATING.lock().unwrap_or_else(|p| p.into_inner());
    let _node = node_lock();
    if let Some(id) = recorded {
        if exists(id) {
            return Ok(id.clone());
        }
        if unused(id.uid) && create(id.uid, home).is_ok() {
            tracing::info!(user = %id.user, uid = id.uid, "made the deployment's user again");
            return Ok(id.clone());
        }
    }
    let mut last_error = None;
    for uid in range.0..=range.1 {
        if !unused(uid) {
            continue;
        }
        match create(uid, home) {
            Ok(id) => return Ok(id),
            // Taken meanwhile by another agent (or a name in use): the next one.
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => format!(
            "no Unix identity for this deployment: every uid of app_uids {}-{} is taken or could not be made ({e})",
            range.0, range.1
        ),
        None => format!(
            "no Unix identity for this deployment: every uid of app_uids {}-{} is taken; widen app_uids in the agent's config or remove deployments",
            range.0, range.1
        ),
    })
}

/// Makes user `deploy-app-<uid>` and its group of the same name, both with id `uid`: one
/// `useradd` (one lock of `/etc/passwd`, one write of each file) rather than `groupadd`
/// then `useradd`. `-K` narrows the ranges it picks from to `uid` itself (and keeps it
/// from warning that the uid is outside `UID_MIN`-`UID_MAX`).
fn create(uid: u32, home: &Path) -> Result<Identity, String> {
    let user = format!("{USER_PREFIX}{uid}");
    let id = uid.to_string();
    let (uid_min, uid_max) = (format!("UID_MIN={uid}"), format!("UID_MAX={uid}"));
    let (gid_min, gid_max) = (format!("GID_MIN={uid}"), format!("GID_MAX={uid}"));
    let home_s = home.to_string_lossy();
    run(
        tool("useradd"),
        &[
            "-u",
            &id,
            "-U",
            "-K",
            &uid_min,
            "-K",
            &uid_max,
            "-K",
            &gid_min,
            "-K",
            &gid_max,
            "-M",
            "-l",
            "-d",
            &home_s,
            "-s",
            nologin(),
            "-c",
            COMMENT,
            &user,
        ],
    )?;
    Ok(Identity {
        uid,
        gid: uid,
        user,
    })
}

/// Frees a deployment's identity (its processes are gone). Only a user this agent made
/// (its name, uid and comment) is deleted. Blocking. Failures are logged.
pub(crate) fn free(id: &Identity) {
    let ours = matches!(
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id.uid)),
        Ok(Some(u)) if u.name == id.user
            && u.name.starts_with(USER_PREFIX)
            && u.gecos.to_string_lossy() == COMMENT
    );
    if !ours {
        return;
    }
    let _one = ALLOCATING.lock().unwrap_or_else(|p| p.into_inner());
    let _node = node_lock();
    if let Err(e) = run(tool("userdel"), &[&id.user]) {
        tracing::warn!(user = %id.user, error = %e, "cannot delete the deployment's user");
        return;
    }
    if matches!(nix::unistd::Group::from_name(&id.user), Ok(Some(_))) {
        if let Err(e) = run(tool("groupdel"), &[&id.user]) {
            tracing::warn!(group = %id.user, error = %e, "cannot delete the deployment's group");
        }
    }
    tracing::info!(user = %id.user, uid = id.uid, "freed the deployment's user");
}

/// `useradd` and friends: on PATH, else in /usr/sbin or /sbin (an agent started with a
/// user's PATH).
fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    on_path
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|f| f.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

fn nologin() -> &'static str {
    ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false")
}

fn run(program: PathBuf, args: &[&str]) -> Result<(), String> {
    let out = Command::new(&program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "running {}: {e} (the agent makes each deployment's user with useradd, from the passwd package)",
                program.display()
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} {} failed: {}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// The first directory on the way to `path` that a user other than its owner cannot pass
/// (no `x` for others), if any: an app running as its own user cannot reach `path` then.
pub(crate) fn blocked_for_others(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut at = PathBuf::from("/");
    for part in full.components().skip(1) {
        at.push(part);
        let Ok(meta) = std::fs::metadata(&at) else {
            return None;
        };
        if meta.is_dir() && meta.permissions().mode() & 0o001 == 0 {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_root_and_system_uids() {
        assert_eq!(parse_range("61184-65519"), Ok((61184, 65519)));
        assert_eq!(parse_range(" 70000 - 70010 "), Ok((70000, 70010)));
        assert!(parse_range("0-100").unwrap_err().contains("root"));
        assert!(parse_range("100-200").unwrap_err().contains("system"));
        assert!(parse_range("5-").is_err());
        assert!(parse_range("65519-61184").is_err());
        assert!(parse_range("61184").unwrap_err().contains("FIRST-LAST"));
    }

    #[test]
    fn a_private_directory_blocks_others() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("identity-test-{}", std::process::id()));
        let inner = base.join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(base.join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(blocked_for_others(&inner), Some(base.join("a")));
        std::fs::set_permissions(base.join("a"), std::fs::Permissions::from_mode(0o711)).unwrap();
        // /tmp itself is 1777.
        assert_eq!(blocked_for_others(&inner), None);
        let _ = std::fs::remove_dir_all(&base);
    }
}
