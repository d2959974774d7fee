//! Secrets, per owner, on the agent only: `<data>/secrets/<owner>/<NAME>` (mode 0600, in
//! directories of mode 0700) with the kind in `<NAME>.kind`. Values go in through the API and
//! out only into the owner's apps (as environment variables) and git (as credentials);
//! [`Redactor`] hides them wherever a value could leak into output.

use std::path::PathBuf;

use crate::error::Error;

mod redactor;

use crate::spec::validate_env_name;
pub(crate) use redactor::Redactor;

/// What a secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An environment variable of the owner's apps that list it.
    Env,
    /// A private key for ssh git URLs of the owner's repositories.
    GitSshKey,
    /// `user:password` (or a bare token) for https git URLs of the owner's repositories.
    GitHttps,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        match s {
            "" | "env" => Some(Kind::Env),
            "git-ssh-key" => Some(Kind::GitSshKey),
            "git-https" => Some(Kind::GitHttps),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Env => "env",
            Kind::GitSshKey => "git-ssh-key",
            Kind::GitHttps => "git-https",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub name: String,
    pub kind: Kind,
    pub updated_at: i64,
}

/// Longest accepted secret value.
const MAX_VALUE: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct SecretStore {
    root: PathBuf,
}

/// `user:alice` → `user_alice`: the directory of an owner's secrets (owners are checked
/// by [`crate::auth::parse_owner`]).
pub(crate) fn validate_owner(owner: &str) -> Result<String, Error> {
    let (kind, name) = crate::auth::parse_owner(owner)?;
    Ok(format!("{kind}_{name}"))
}

/// Runs secret file I/O on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("secret store task: {e}")))?
}

/// The store's operations; each does its file I/O on a blocking thread.
impl SecretStore {
    pub(crate) fn new(root: PathBuf) -> SecretStore {
        SecretStore { root }
    }

    pub(crate) async fn set(
        &self,
        owner: &str,
        name: &str,
        value: Vec<u8>,
        kind: Kind,
    ) -> Result<(), Error> {
        let (me, owner, name) = (self.clone(), owner.to_string(), name.to_string());
        blocking(move || me.set_blocking(&owner, &name, &value, kind)).await
    }

    pub(crate) async fn list(&self, owner: &str) -> Result<Vec<Info>, Error> {
        let (me, owner) = (self.clone(), owner.to_string());
        blocking(move || me.list_blocking(&owner)).await
    }

    /// `false` when there was no such secret.
    pub(crate) async fn remove(&self, owner: &str, name: &str) -> Result<bool, Error> {
        let (me, owner, name) = (self.clone(), owner.to_string(), name.to_string());
        blocking(move || me.remove_blocking(&owner, &name)).await
    }

    /// The values of `names` among `owner`'s env secrets, or the names that are missing.
    pub(crate) async fn env_values(
        &self,
        owner: &str,
        names: &[String],
    ) -> Result<Vec<(String, String)>, Vec<String>> {
        let (me, owner, names) = (self.clone(), owner.to_string(), names.to_vec());
        let all = names.clone();
        tokio::task::spawn_blocking(move || me.env_values_blocking(&owner, &names))
            .await
            .unwrap_or(Err(all))
    }

    /// Hides what `spec` may reveal in output: its secrets' values and its owner's git
    /// credential. Also the names of its secrets that are missing (none is hidden then).
    pub(crate) async fn redactor(&self, spec: &crate::spec::Spec) -> (Redactor, Vec<String>) {
        let (mut values, missing) = match self.env_values(&spec.owner, &spec.secrets).await {
            Ok(v) => (v.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), vec![]),
            Err(missing) => (vec![], missing),
        };
        if let Ok(Some((_, v))) = self.git_credential(&spec.owner, &spec.repo).await {
            values.push(String::from_utf8_lossy(&v).into_owned());
        }
        (Redactor::new(values), missing)
    }

    /// The owner's git credential for a URL: an ssh key for ssh URLs, user:password for https.
    pub(crate) async fn git_credential(
        &self,
        owner: &str,
        url: &str,
    ) -> Result<Option<(Kind, Vec<u8>)>, Error> {
        let (me, owner, url) = (self.clone(), owner.to_string(), url.to_string());
        blocking(move || me.git_credential_blocking(&owner, &url)).await
    }

    fn dir(&self, owner: &str) -> Result<PathBuf, Error> {
        Ok(self.root.join(validate_owner(owner)?))
    }

    fn set_blocking(&self, owner: &str, name: &str, value: &[u8], kind: Kind) -> Result<(), Error> {
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
        crate::fsmode::write_atomic(&path, value)?;
        crate::fsmode::write_atomic(&dir.join(format!("{name}.kind")), kind.as_str().as_bytes())
    }

    fn get_blocking(&self, owner: &str, name: &str) -> Result<Option<(Vec<u8>, Kind)>, Error> {
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

    fn list_blocking(&self, owner: &str) -> Result<Vec<Info>, Error> {
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

    fn remove_blocking(&self, owner: &str, name: &str) -> Result<bool, Error> {
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

    fn env_values_blocking(
        &self,
        owner: &str,
        names: &[String],
    ) -> Result<Vec<(String, String)>, Vec<String>> {
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            match self.get_blocking(owner, name) {
                Ok(Some((v, Kind::Env))) => {
                    values.push((name.clone(), String::from_utf8_lossy(&v).into_owned()))
                }
                _ => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(values)
        } else {
            Err(missing)
        }
    }

    fn git_credential_blocking(
        &self,
        owner: &str,
        url: &str,
    ) -> Result<Option<(Kind, Vec<u8>)>, Error> {
        let wanted = if url.starts_with("https://") || url.starts_with("http://") {
            Kind::GitHttps
        } else if url.starts_with("ssh://") || crate::spec::is_remote_url(url) && url.contains('@')
        {
            Kind::GitSshKey
        } else {
            return Ok(None);
        };
        for info in self.list_blocking(owner)? {
            if info.kind == wanted {
                if let Some((v, _)) = self.get_blocking(owner, &info.name)? {
                    return Ok(Some((wanted, v)));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
