//! Who may do what: users (bearer tokens, stored only as SHA-256 hashes, compared in
//! constant time), groups (members), and the rule that a deployment or secret is visible
//! only to its owner user, the members of its owner group, and admins.
//!
//! The users and groups live in `auth.toml` (in the data directory unless configured),
//! managed with `deploy-agent user|group ...` on the node. The agent reloads the file when
//! it changes. Without users, authentication is off (the local, loopback-only mode).
//!
//! ```toml
//! [users.alice]
//! token_sha256 = "9f86d0…"
//! admin = true
//! expires_at = 1790000000   # optional, unix seconds
//!
//! [groups.ml]
//! members = ["alice", "bob"]
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// How often the file's modification time is looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// Prefix of the tokens the agent makes (so they are recognisable in a leak scan).
pub(crate) const TOKEN_PREFIX: &str = "dat_";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct User {
    /// Hex SHA-256 of the token; the token itself is never stored.
    pub token_sha256: String,
    #[serde(default)]
    pub admin: bool,
    /// Unix seconds after which the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Group {
    #[serde(default)]
    pub members: Vec<String>,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub user: String,
    pub admin: bool,
    pub groups: Vec<String>,
    /// False in the no-authentication mode.
    pub authenticated: bool,
}

impl Caller {
    /// The caller when authentication is off: may do everything.
    pub(crate) fn local() -> Caller {
        Caller {
            user: "local".to_string(),
            admin: true,
            groups: vec![],
            authenticated: false,
        }
    }

    /// Whether the caller may see and manage what `owner` owns.
    pub(crate) fn may(&self, owner: &str) -> bool {
        if self.admin {
            return true;
        }
        match owner.split_once(':') {
            Some(("user", u)) => u == self.user,
            Some(("group", g)) => self.groups.iter().any(|m| m == g),
            _ => false,
        }
    }

    /// `user:NAME` of the caller.
    pub(crate) fn owner(&self) -> String {
        format!("user:{}", self.user)
    }
}

impl AuthFile {
    pub(crate) fn load(path: &Path) -> Result<AuthFile, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| Error::InvalidInput {
                field: path.display().to_string(),
                reason: e.to_string().trim().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(Error::io("reading users and groups", path, e)),
        }
    }

    /// Writes the file (mode 0600: hashes are not secrets, but nobody else needs them).
    pub(crate) fn save(&self, path: &Path) -> Result<(), Error> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("encoding {}: {e}", path.display())))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        crate::fsmode::write_atomic(path, text.as_bytes())?;
        set_mode(path, 0o600);
        Ok(())
    }

    /// Finds the user whose token hashes to the presented token's hash.
    fn check(&self, token: &str, now: i64) -> Result<Caller, Refused> {
        let presented = hex_sha256(token.as_bytes());
        // Look at every user, so the time taken does not depend on which one matched.
        let mut found: Option<&str> = None;
        for (name, user) in &self.users {
            if constant_time_eq(presented.as_bytes(), user.token_sha256.as_bytes()) {
                found = Some(name);
            }
        }
        let (name, user) = found
            .and_then(|n| self.users.get_key_value(n))
            .ok_or(Refused::BadToken)?;
        if user.expires_at.is_some_and(|t| t <= now) {
            return Err(Refused::Expired(name.clone()));
        }
        Ok(Caller {
            user: name.to_string(),
            admin: user.admin,
            groups: self
                .groups
                .iter()
                .filter(|(_, g)| g.members.iter().any(|m| m == name))
                .map(|(g, _)| g.clone())
                .collect(),
            authenticated: true,
        })
    }
}

/// Equality whose time does not depend on where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token (32 bytes from the kernel, URL-safe base64).
pub(crate) fn new_token() -> Result<String, Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading random bytes", "/dev/urandom", e))?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A user or group name: 1-64 letters, digits, '-', '_' or '.', not starting with '.'
/// (it names files and directories).
pub(crate) fn is_principal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An owner, `user:NAME` or `group:NAME`: its kind and name.
pub(crate) fn parse_owner(owner: &str) -> Result<(&str, &str), Error> {
    let invalid = |reason: &str| Error::InvalidInput {
        field: "owner".into(),
        reason: format!("{owner:?} {reason}"),
    };
    match owner.split_once(':') {
        Some((kind @ ("user" | "group"), name)) if is_principal_name(name) => Ok((kind, name)),
        Some(("user" | "group", _)) => Err(invalid(
            "has a name that is not letters, digits, '-', '_' or '.'",
        )),
        _ => Err(invalid("must be user:NAME or group:NAME")),
    }
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Why a request is refused. The caller gets the same answer for a wrong, expired and
/// removed token; the agent's log tells them apart (an expired token names its user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    NoToken,
    BadToken,
    Expired(String),
}

/// The users and groups, reloaded when the file changes.
pub(crate) struct Auth {
    path: PathBuf,
    state: RwLock<Loaded>,
}

struct Loaded {
    file: AuthFile,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl Auth {
    pub(crate) fn open(path: PathBuf) -> Result<Auth, Error> {
        let file = AuthFile::load(&path)?;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Auth {
            path,
            state: RwLock::new(Loaded {
                file,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// The caller for a request's bearer token.
    pub(crate) fn authenticate(&self, token: Option<&str>) -> Result<Caller, Refused> {
        self.reload_if_changed();
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if state.file.users.is_empty() {
            return Ok(Caller::local());
        }
        let token = token.ok_or(Refused::NoToken)?;
        state.file.check(token, crate::clock::now_unix())
    }

    fn reload_if_changed(&self) {
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            if state.checked.elapsed() < RELOAD_CHECK {
                return;
            }
        }
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.checked = Instant::now();
        if modified == state.modified {
            return;
        }
        match AuthFile::load(&self.path) {
            Ok(file) => {
                tracing::info!(path = %self.path.display(), users = file.users.len(), "reloaded users and groups");
                state.file = file;
                state.modified = modified;
            }
            // A broken edit keeps the last good users; the agent says why.
            Err(e) => {
                tracing::error!(error = %e, "cannot reload users and groups; keeping the previous ones")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> (AuthFile, String, String) {
        let (ta, tb) = ("dat_alice".to_string(), "dat_bob".to_string());
        let mut f = AuthFile::default();
        f.users.insert(
            "alice".into(),
            User {
                token_sha256: hex_sha256(ta.as_bytes()),
                admin: false,
                expires_at: None,
            },
        );
        f.users.insert(
            "bob".into(),
            User {
                token_sha256: hex_sha256(tb.as_bytes()),
                admin: false,
                expires_at: Some(100),
            },
        );
        f.groups.insert(
            "ml".into(),
            Group {
                members: vec!["alice".into()],
            },
        );
        (f, ta, tb)
    }

    #[test]
    fn tokens_map_to_users_with_groups() {
        let (f, ta, _) = file();
        let c = f.check(&ta, 50).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.groups, vec!["ml".to_string()]);
        assert_eq!(f.check("dat_wrong", 50), Err(Refused::BadToken));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (f, _, tb) = file();
        assert!(f.check(&tb, 50).is_ok());
        assert_eq!(f.check(&tb, 100), Err(Refused::Expired("bob".into())));
    }

    #[test]
    fn ownership_rule() {
        let (f, ta, _) = file();
        let alice = f.check(&ta, 0).unwrap();
        assert!(alice.may("user:alice"));
        assert!(alice.may("group:ml"));
        assert!(!alice.may("user:bob"));
        assert!(!alice.may("group:ops"));
        assert!(!alice.may("bogus"));
        assert!(Caller::local().may("group:ops"));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_ne!(a, b);
    }
}
