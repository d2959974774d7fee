//! Credentials and host verification for git over the network: the owner's git secret
//! (an ssh private key, or user:password / a token for https), and SSH host keys checked
//! against the agent's `known_hosts` (recorded on first use, a change refused).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use base64::Engine;
use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

use crate::secrets::Kind;

/// What git may use for one repository.
#[derive(Clone, Default)]
pub(crate) struct GitAuth {
    /// The owner's credential for this URL's scheme, if any.
    pub credential: Option<(Kind, Vec<u8>)>,
    /// `<data>/known_hosts`: `HOST sha256:BASE64` lines.
    pub known_hosts: PathBuf,
    /// Why the last host check refused (libgit2 replaces a callback's message with its own).
    pub refusal: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl GitAuth {
    /// git's error, or the host check's own reason when that is what failed.
    pub(crate) fn explain(&self, git_message: String) -> String {
        match self.refusal.lock().ok().and_then(|mut r| r.take()) {
            Some(reason) => reason,
            None => git_message,
        }
    }
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("GitAuth")
            .field(
                "credential",
                &self.credential.as_ref().map(|(k, _)| k.as_str()),
            )
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

/// Callbacks for a connect or fetch. Credentials are offered once: a second request means
/// they were refused, and asking again would loop.
pub(crate) fn callbacks(auth: &GitAuth) -> RemoteCallbacks<'_> {
    let mut cb = RemoteCallbacks::new();
    let tried = Cell::new(false);
    cb.credentials(move |_url, username, allowed| {
        if tried.replace(true) {
            return Err(git2::Error::from_str(
                "the repository refused the owner's git credential",
            ));
        }
        match &auth.credential {
            Some((Kind::GitSshKey, key)) if allowed.contains(CredentialType::SSH_KEY) => {
                let key = String::from_utf8_lossy(key);
                Cred::ssh_key_from_memory(username.unwrap_or("git"), None, &key, None)
            }
            Some((Kind::GitHttps, value)) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                let value = String::from_utf8_lossy(value);
                let (user, pass) = match value.split_once(':') {
                    Some((u, p)) => (u.to_string(), p.to_string()),
                    // A bare token: the user name most git hosts accept with one.
                    None => ("x-access-token".to_string(), value.trim().to_string()),
                };
                Cred::userpass_plaintext(&user, pass.trim())
            }
            _ => Err(git2::Error::from_str(
                "the repository asks for credentials and the owner has no git secret for it (deployctl secret set --kind git-https|git-ssh-key)",
            )),
        }
    });
    let known_hosts = auth.known_hosts.clone();
    let refusal = auth.refusal.clone();
    cb.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 verified it against the system's CAs already.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let Some(hash) = hostkey.hash_sha256() else {
            return Err(git2::Error::from_str(
                "the SSH server sent no host key hash",
            ));
        };
        let fingerprint = format!(
            "sha256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
        );
        check_host(&known_hosts, host, &fingerprint)
            .map(|()| CertificateCheckStatus::CertificateOk)
            .map_err(|e| {
                if let Ok(mut r) = refusal.lock() {
                    *r = Some(e.clone());
                }
                git2::Error::from_str(&e)
            })
    });
    cb
}

/// First use records the host's key; a different key later is refused.
pub(crate) fn check_host(known_hosts: &Path, host: &str, fingerprint: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(known_hosts).unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(host) {
            let known = parts.next().unwrap_or_default();
            if known == fingerprint {
                return Ok(());
            }
            return Err(format!(
                "the SSH host key of {host} changed (known {known}, now {fingerprint}); if that is expected, remove its line from {}",
                known_hosts.display()
            ));
        }
    }
    use std::io::Write;
    let mut f = crate::fsmode::append_private(known_hosts).map_err(|e| {
        format!(
            "cannot record the host key of {host} in {}: {e}",
            known_hosts.display()
        )
    })?;
    writeln!(f, "{host} {fingerprint}")
        .map_err(|e| format!("cannot record the host key of {host}: {e}"))?;
    tracing::info!(host, fingerprint, "recorded a new SSH host key");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_recorded_then_enforced() {
        let path = std::env::temp_dir().join(format!("known-hosts-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        check_host(&path, "git.example", "sha256:AAA").unwrap();
        check_host(&path, "git.example", "sha256:AAA").unwrap();
        check_host(&path, "other.example", "sha256:BBB").unwrap();
        let err = check_host(&path, "git.example", "sha256:CCC").unwrap_err();
        assert!(err.contains("changed"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
