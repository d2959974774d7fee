//! Secrets, per owner, on the agent only: `<data>/secrets/<owner>/<NAME>` (mode 0600, in
//! directories of mode 0700) with the kind in `<NAME>.kind`. Values go in through the API and
//! out only into the owner's apps (as environment variables) and git (as credentials);
//! [`Redactor`] hides them wherever a value could leak into output.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::spec::validate_env_name;

/// What a secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An environment variable of the owner's apps that list it.
    Env,
    /// A private key for ssh git URLs of the owner's repositories.
    GitSshKey,
    /// `user:password` (or a bare token) for https git URLs of the owner's repositories.
    GitHttps,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "" | "env" => Some(Kind::Env),
            "git-ssh-key" => Some(Kind::GitSshKey),
            "git-https" => Some(Kind::GitHttps),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Env => "env",
            Kind::GitSshKey => "git-ssh-key",
            Kind::GitHttps => "git-https",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Info {
    pub name: String,
    pub kind: Kind,
    pub updated_at: i64,
}

/// Longest accepted secret value.
const MAX_VALUE: usize = 64 * 1024;

pub struct SecretStore {
    root: PathBuf,
}

/// `user:alice` → `user_alice` (owner names are validated: letters, digits, '-', '_', '.').
pub fn validate_owner(owner: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidInput {
        field: "owner".into(),
        reason: format!("{owner:?} {reason}"),
    };
    let (kind, name) = owner
        .split_once(':')
        .ok_or_else(|| invalid("must be user:NAME or group:NAME"))?;
    if kind != "user" && kind != "group" {
        return Err(invalid("must be user:NAME or group:NAME"));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !ok {
        return Err(invalid(
            "has a name that is not letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(format!("{kind}_{name}"))
}

impl SecretStore {
    pub fn new(root: PathBuf) -> SecretStore {
        SecretStore { root }
    }

    fn dir(&self, owner: &str) -> Result<PathBuf, Error> {
        Ok(self.root.join(validate_owner(owner)?))
    }

    pub fn set(&self, owner: &str, name: &str, value: &[u8], kind: Kind) -> Result<(), Error> {
        validate_env_name(name).map_err(|_| Error::InvalidInput {
            field: "name".into(),
            reason: format!("{name:?} must be an environment variable name (A-Z, 0-9, _)"),
        })?;
        if value.is_empty() || value.len() > MAX_VALUE {
            return Err(Error::InvalidInput {
                field: "value".into(),
                reason: format!("must be 1 to {MAX_VALUE} bytes"),
            });
        }
        let dir = self.dir(owner)?;
        for d in [&self.root, &dir] {
            std::fs::create_dir_all(d).map_err(|e| Error::io("creating secret store", d, e))?;
            crate::auth::set_mode(d, 0o700);
        }
        let path = dir.join(name);
        write_private(&path, value)?;
        write_private(&dir.join(format!("{name}.kind")), kind.as_str().as_bytes())
    }

    pub fn get(&self, owner: &str, name: &str) -> Result<Option<(Vec<u8>, Kind)>, Error> {
        if validate_env_name(name).is_err() {
            return Ok(None);
        }
        let dir = self.dir(owner)?;
        match std::fs::read(dir.join(name)) {
            Ok(v) => {
                let kind = std::fs::read_to_string(dir.join(format!("{name}.kind")))
                    .ok()
                    .and_then(|k| Kind::parse(k.trim()))
                    .unwrap_or(Kind::Env);
                Ok(Some((v, kind)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading secret", dir.join(name), e)),
        }
    }

    pub fn list(&self, owner: &str) -> Result<Vec<Info>, Error> {
        let dir = self.dir(owner)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains('.') || validate_env_name(&name).is_err() {
                continue;
            }
            let kind = std::fs::read_to_string(dir.join(format!("{name}.kind")))
                .ok()
                .and_then(|k| Kind::parse(k.trim()))
                .unwrap_or(Kind::Env);
            let updated_at = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            out.push(Info {
                name,
                kind,
                updated_at,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `false` when there was no such secret.
    pub fn remove(&self, owner: &str, name: &str) -> Result<bool, Error> {
        let dir = self.dir(owner)?;
        if validate_env_name(name).is_err() {
            return Ok(false);
        }
        let _ = std::fs::remove_file(dir.join(format!("{name}.kind")));
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("removing secret", dir.join(name), e)),
        }
    }

    /// The owner's git credential for a URL: an ssh key for ssh URLs, user:password for https.
    pub fn git_credential(&self, owner: &str, url: &str) -> Result<Option<(Kind, Vec<u8>)>, Error> {
        let wanted = if url.starts_with("https://") || url.starts_with("http://") {
            Kind::GitHttps
        } else if url.starts_with("ssh://") || crate::spec::is_remote_url(url) && url.contains('@')
        {
            Kind::GitSshKey
        } else {
            return Ok(None);
        };
        for info in self.list(owner)? {
            if info.kind == wanted {
                if let Some((v, _)) = self.get(owner, &info.name)? {
                    return Ok(Some((wanted, v)));
                }
            }
        }
        Ok(None)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("writing secret", path, e)
    })
}

/// Replaces secret values in text that leaves the agent (output lines, failure tails, logs).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

/// Values shorter than this are not redacted (they would blank out ordinary words).
const MIN_REDACTED: usize = 4;

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values
            .into_iter()
            .flat_map(|v| {
                // A multi-line value (a key) may leak line by line.
                let mut parts: Vec<String> = v.lines().map(|l| l.trim().to_string()).collect();
                parts.push(v.trim().to_string());
                parts
            })
            .filter(|v| v.len() >= MIN_REDACTED)
            .collect();
        // Longest first, so a value that contains another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "[redacted]");
            }
        }
        out
    }

    pub fn bytes(&self, b: Vec<u8>) -> Vec<u8> {
        if self.values.is_empty() {
            return b;
        }
        self.text(&String::from_utf8_lossy(&b)).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (SecretStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "secrets-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        (SecretStore::new(dir.clone()), dir)
    }

    #[test]
    fn set_get_list_remove_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let (s, dir) = store();
        s.set("group:ml", "DB_PASSWORD", b"hunter2!", Kind::Env)
            .unwrap();
        let (v, k) = s.get("group:ml", "DB_PASSWORD").unwrap().unwrap();
        assert_eq!((v.as_slice(), k), (&b"hunter2!"[..], Kind::Env));
        let mode = std::fs::metadata(dir.join("group_ml/DB_PASSWORD"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(dir.join("group_ml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert_eq!(s.list("group:ml").unwrap().len(), 1);
        assert!(s.get("user:bob", "DB_PASSWORD").unwrap().is_none());
        assert!(s.remove("group:ml", "DB_PASSWORD").unwrap());
        assert!(!s.remove("group:ml", "DB_PASSWORD").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hostile_names_and_owners_are_refused() {
        let (s, _) = store();
        assert!(s.set("group:ml", "../x", b"v", Kind::Env).is_err());
        assert!(s.set("group:../x", "A", b"v", Kind::Env).is_err());
        assert!(s.set("root", "A", b"v", Kind::Env).is_err());
        assert!(s.set("user:a", "A", b"", Kind::Env).is_err());
    }

    #[test]
    fn git_credentials_by_scheme() {
        let (s, dir) = store();
        s.set("user:a", "GIT_TOKEN", b"u:p", Kind::GitHttps)
            .unwrap();
        s.set(
            "user:a",
            "DEPLOY_KEY",
            b"-----BEGIN KEY-----",
            Kind::GitSshKey,
        )
        .unwrap();
        let https = s
            .git_credential("user:a", "https://h/r.git")
            .unwrap()
            .unwrap();
        assert_eq!(https.0, Kind::GitHttps);
        let ssh = s.git_credential("user:a", "git@h:r.git").unwrap().unwrap();
        assert_eq!(ssh.0, Kind::GitSshKey);
        assert!(s.git_credential("user:a", "/local/repo").unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn redaction() {
        let r = Redactor::new(["s3cr3t-value".to_string(), "ab".to_string()]);
        assert_eq!(r.text("echo s3cr3t-value!"), "echo [redacted]!");
        assert_eq!(r.text("ab stays"), "ab stays");
        let k = Redactor::new(["-----BEGIN-----\nAAAABBBBCCCC\n-----END-----".to_string()]);
        assert_eq!(k.text("line AAAABBBBCCCC"), "line [redacted]");
    }
}
