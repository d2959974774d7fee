//! `deploy-agent init`, `deploy-agent user ...`, `deploy-agent group ...`: the node-side
//! commands an operator runs to set up TLS and manage users and groups. They edit the files
//! the running agent reads (it reloads `auth.toml` when it changes).

use std::path::Path;
use std::time::Duration;

use crate::auth::{hex_sha256, new_token, AuthFile, Group, User};
use crate::error::Error;
use crate::tls::{self, TlsFiles};

mod locate;
pub use locate::*;

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A user or group name: letters, digits, '-', '_', '.'.
pub fn validate_principal(field: &str, name: &str) -> Result<(), Error> {
    if crate::auth::is_principal_name(name) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} must be 1-64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// What `init` made, for the message it prints.
pub struct Initialised {
    pub ca_cert: std::path::PathBuf,
    pub admin: String,
    pub token: String,
}

/// Creates the CA and the agent's certificate for `names`, and a first admin user (unless
/// one exists). Returns the admin's token (shown once; only its hash is stored).
pub fn init(
    data_dir: &Path,
    auth_path: &Path,
    names: &[String],
    admin: &str,
) -> Result<Initialised, Error> {
    validate_principal("--admin", admin)?;
    let files = TlsFiles::new(data_dir);
    tls::create(&files, names)?;
    let mut auth = AuthFile::load(auth_path)?;
    let token = new_token()?;
    auth.users.insert(
        admin.to_string(),
        User {
            token_sha256: hex_sha256(token.as_bytes()),
            admin: true,
            expires_at: None,
        },
    );
    auth.save(auth_path)?;
    Ok(Initialised {
        ca_cert: files.ca_cert(),
        admin: admin.to_string(),
        token,
    })
}

/// `init --cert-only`: a certificate for `names` from the CA already in `DATA/tls` (the
/// first node's, copied here), users left alone. Returns the CA certificate's path.
pub fn init_cert_only(data_dir: &Path, names: &[String]) -> Result<std::path::PathBuf, Error> {
    let files = TlsFiles::new(data_dir);
    if !(files.ca_cert().is_file() && files.ca_key().is_file()) {
        return Err(invalid(
            "--cert-only",
            format!(
                "no CA in {dir} (ca.pem and ca.key): copy them there from the first node's \
                 DATA/tls, or run init without --cert-only for a CA of this node's own",
                dir = files.ca_cert().parent().unwrap_or(data_dir).display()
            ),
        ));
    }
    tls::create(&files, names)?;
    Ok(files.ca_cert())
}

/// What `init --cert-only` prints: the certificate made, and whether the users are there.
pub fn cert_only_message(ca: &Path, auth_path: &Path, names: &[String]) -> Result<String, Error> {
    let users = match auth_path.is_file() {
        true => AuthFile::load(auth_path)?.users.len(),
        false => 0,
    };
    let users = match users {
        0 => format!(
            "No users in {auth} yet: copy the first node's auth.toml there, so its tokens work \
             here too.",
            auth = auth_path.display()
        ),
        n => format!(
            "Users: {n} in {auth} (the same tokens work wherever this file is the same).",
            auth = auth_path.display()
        ),
    };
    Ok(format!(
        "Issued a TLS certificate for {names}, signed by the CA {ca}\n  (the first node's: \
         the env's one ca_file reaches this agent too)\n{users}\nThe agent uses it when it \
         starts.\n",
        names = names.join(", "),
        ca = ca.display(),
    ))
}

/// What `init` prints: what it made, where, and the next commands, each working as printed
/// (`cmd` is `deploy-agent` with the flags that find the same files, see [`Found::command`]).
pub fn init_message(
    done: &Initialised,
    config: &crate::config::Config,
    names: &[String],
    cmd: &str,
) -> String {
    let host = names.first().map(String::as_str).unwrap_or("localhost");
    let auth = config.auth_path();
    let token = &done.token;
    let port = config.listen.port();
    format!(
        "Created a CA and a TLS certificate for {names}
  CA certificate: {ca}  (copy it to every machine that runs deployctl)
Added the admin user {admin:?} to {auth}; its token (shown only now):

  {token}

The agent uses them when it starts (TLS from {tls}, users from {auth}).
On the machine that runs deployctl:
  mkdir -p certs && scp {host}:{ca} certs/
  install -D -m 600 /dev/stdin ~/.config/deployctl/{host}.token <<< '{token}'
  deployctl declare env agent prod --address https://{host}:{port} \\
      --ca-file certs/ca.pem --token-file ~/.config/deployctl/{host}.token
More nodes with the same CA and users: copy {tls}/ca.pem, ca.key and {auth} to
  each, then there: deploy-agent init --cert-only --name NAME
More users: {cmd} user add NAME; groups: {cmd} group add GROUP --member NAME
",
        names = names.join(", "),
        ca = done.ca_cert.display(),
        admin = done.admin,
        auth = auth.display(),
        tls = config.data_dir.join("tls").display(),
    )
}

/// Whether `name` is a user already (`user add` then gives it a new token).
pub fn has_user(auth_path: &Path, name: &str) -> Result<bool, Error> {
    Ok(AuthFile::load(auth_path)?.users.contains_key(name))
}

/// Adds a user (or gives an existing one a new token); returns the token.
pub fn user_add(
    auth_path: &Path,
    name: &str,
    admin: bool,
    expires_in: Option<Duration>,
) -> Result<String, Error> {
    validate_principal("NAME", name)?;
    let mut auth = AuthFile::load(auth_path)?;
    let token = new_token()?;
    let expires_at = expires_in.map(|d| crate::clock::now_unix() + d.as_secs() as i64);
    auth.users.insert(
        name.to_string(),
        User {
            token_sha256: hex_sha256(token.as_bytes()),
            admin,
            expires_at,
        },
    );
    auth.save(auth_path)?;
    Ok(token)
}

pub fn user_remove(auth_path: &Path, name: &str) -> Result<(), Error> {
    let mut auth = AuthFile::load(auth_path)?;
    if auth.users.remove(name).is_none() {
        return Err(Error::NotFound(format!("user {name}")));
    }
    for g in auth.groups.values_mut() {
        g.members.retain(|m| m != name);
    }
    auth.save(auth_path)
}

/// Creates a group or adds members to it.
pub fn group_add(auth_path: &Path, name: &str, members: &[String]) -> Result<(), Error> {
    validate_principal("GROUP", name)?;
    let mut auth = AuthFile::load(auth_path)?;
    for m in members {
        if !auth.users.contains_key(m) {
            return Err(invalid(
                "--member",
                format!("{m:?} is not a user (add it with `deploy-agent user add {m}`)"),
            ));
        }
    }
    let group = auth
        .groups
        .entry(name.to_string())
        .or_insert_with(Group::default);
    for m in members {
        if !group.members.contains(m) {
            group.members.push(m.clone());
        }
    }
    auth.save(auth_path)
}

/// Removes members from a group, or the whole group when no member is named.
pub fn group_remove(auth_path: &Path, name: &str, members: &[String]) -> Result<(), Error> {
    let mut auth = AuthFile::load(auth_path)?;
    let Some(group) = auth.groups.get_mut(name) else {
        return Err(Error::NotFound(format!("group {name}")));
    };
    if members.is_empty() {
        auth.groups.remove(name);
    } else {
        group.members.retain(|m| !members.contains(m));
    }
    auth.save(auth_path)
}

/// "expires 2027-01-05T10:00:00Z (in 30 days)" / "expired 2026-12-01T10:00:00Z (5 days ago)".
fn expiry_words(at: i64, now: i64) -> String {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64);
    let stamp = humantime::format_rfc3339_seconds(when);
    let span = |secs: i64| {
        let secs = secs.unsigned_abs();
        match secs {
            s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
            s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
            s if s >= 120 => format!("{} minutes", s / 60),
            s => format!("{s} s"),
        }
    };
    if at > now {
        format!("expires {stamp} (in {})", span(at - now))
    } else {
        format!("expired {stamp} ({} ago)", span(now - at))
    }
}

/// `NAME (admin) [groups]` lines, for `deploy-agent user list`.
pub fn describe(auth_path: &Path) -> Result<String, Error> {
    let auth = AuthFile::load(auth_path)?;
    let mut out = String::new();
    for (name, user) in &auth.users {
        let groups: Vec<&str> = auth
            .groups
            .iter()
            .filter(|(_, g)| g.members.contains(name))
            .map(|(n, _)| n.as_str())
            .collect();
        let expiry = user
            .expires_at
            .map(|t| format!(", {}", expiry_words(t, crate::clock::now_unix())))
            .unwrap_or_default();
        out.push_str(&format!(
            "user {name}{}{expiry}; groups: {}\n",
            if user.admin { " (admin)" } else { "" },
            if groups.is_empty() {
                "-".to_string()
            } else {
                groups.join(", ")
            }
        ));
    }
    for (name, g) in &auth.groups {
        out.push_str(&format!("group {name}: {}\n", g.members.join(", ")));
    }
    if out.is_empty() {
        out.push_str("no users: authentication is off (local mode)\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn cert_only_needs_the_first_nodes_ca_and_signs_with_it() {
        let base = std::env::temp_dir().join(format!("cert-only-test-{}", std::process::id()));
        let (first, second) = (base.join("first"), base.join("second"));
        let err = super::init_cert_only(&second, &["10.0.0.6".into()]).unwrap_err();
        assert!(err.to_string().contains("copy them there"), "{err}");
        assert!(!second.join("tls/agent.pem").exists());
        std::fs::create_dir_all(&first).unwrap();
        let auth = first.join("auth.toml");
        super::init(&first, &auth, &["10.0.0.5".into()], "admin").unwrap();
        let tls = second.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        for f in ["ca.pem", "ca.key"] {
            std::fs::copy(first.join("tls").join(f), tls.join(f)).unwrap();
        }
        let ca = super::init_cert_only(&second, &["10.0.0.6".into()]).unwrap();
        assert_eq!(
            std::fs::read(&ca).unwrap(),
            std::fs::read(first.join("tls/ca.pem")).unwrap()
        );
        assert!(tls.join("agent.pem").is_file());
        let msg = super::cert_only_message(&ca, &second.join("auth.toml"), &["x".into()]);
        assert!(msg.unwrap().contains("No users in"));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn expiry_is_a_date_and_a_span() {
        let now = 1_796_000_000;
        assert_eq!(
            super::expiry_words(now + 30 * 86_400, now),
            "expires 2026-12-30T00:53:20Z (in 30 days)"
        );
        assert!(super::expiry_words(now - 7_200, now).ends_with("(2 hours ago)"));
    }

    use super::*;

    #[test]
    fn users_and_groups_round_trip() {
        let dir = std::env::temp_dir().join(format!("admin-test-{}", std::process::id()));
        let path = dir.join("auth.toml");
        let _ = std::fs::remove_dir_all(&dir);
        let t = user_add(&path, "alice", false, None).unwrap();
        user_add(&path, "bob", false, Some(Duration::from_secs(3600))).unwrap();
        group_add(&path, "ml", &["alice".into()]).unwrap();
        assert!(group_add(&path, "ml", &["carol".into()]).is_err());
        let auth = crate::auth::Auth::open(path.clone()).unwrap();
        let c = auth.authenticate(Some(&t)).unwrap();
        assert_eq!(
            (c.user.as_str(), c.groups.clone()),
            ("alice", vec!["ml".to_string()])
        );
        user_remove(&path, "alice").unwrap();
        let text = describe(&path).unwrap();
        assert!(
            text.contains("user bob") && !text.contains("alice"),
            "{text}"
        );
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("token_sha256"));
        assert!(
            !std::fs::read_to_string(&path).unwrap().contains(&t),
            "tokens are not stored"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
