//! Which agents an env names and how to reach them: `NAME.env.yaml` (or the built-in
//! `local`), its addresses, token and CA; and the rule that a token never travels
//! unencrypted off this machine.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::local::local_address;
use super::Target;
use crate::decl::{self, EnvDecl};
use crate::error::bad_input;
use crate::project::Project;

/// `~/x` → `$HOME/x`; a relative path is taken from the project root.
fn expand(path: &str, root: &Path) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    root.join(path)
}

/// Checks env `name` as [`resolve_env`] does, but without asking a fleet's registry (for
/// `declare deployment`, which reaches nothing).
pub(crate) fn check_env(project: &Project, name: &str) -> anyhow::Result<()> {
    decl::validate_name("env", name)?;
    let path = project.env_file(name);
    match decl::load::<EnvDecl>(&path)? {
        Some(env) if env.kind == "fleet" => {
            validate_env(name, &path, &env)?;
            credentials(project, &path, &env).map(|_| ())
        }
        _ => resolve_env(project, name).map(|_| ()),
    }
}

/// Finds an env: `NAME.env.yaml` in the project, else the built-in `local`.
pub(crate) fn resolve_env(project: &Project, name: &str) -> anyhow::Result<Target> {
    decl::validate_name("env", name)?;
    let path = project.env_file(name);
    if let Some(env) = decl::load::<EnvDecl>(&path)? {
        validate_env(name, &path, &env)?;
        let at = path.display();
        let (ca_pem, token) = credentials(project, &path, &env)?;
        let (addresses, fleet) = match env.kind.as_str() {
            "fleet" => {
                let fleet = super::fleet::resolve(&env, project.agent_timeout)
                    .map_err(|e| e.context(format!("env {name} ({at})")))?;
                let addresses: Vec<String> =
                    fleet.agents.iter().map(|r| normalize(&r.address)).collect();
                if token.is_some() {
                    refuse_plain_remote(name, &path, &addresses)?;
                }
                (addresses, Some(std::sync::Arc::new(fleet)))
            }
            _ => (env.addresses.iter().map(|a| normalize(a)).collect(), None),
        };
        if addresses.iter().any(|a| a.starts_with("https://")) && ca_pem.is_none() {
            return Err(bad_input(format!(
                "{at}: ca_file: required for https:// addresses (the CA that `deploy-agent init` made)"
            )));
        }
        if token.is_some() {
            warn_plain_loopback(name, &addresses);
        }
        return Ok(Target {
            env: name.to_string(),
            addresses,
            builtin_local: false,
            ca_pem,
            token,
            timeout: project.agent_timeout,
            fleet,
        });
    }
    if name == crate::project::DEFAULT_ENV {
        return Ok(Target {
            env: name.to_string(),
            addresses: vec![normalize(&local_address())],
            builtin_local: true,
            ca_pem: None,
            token: None,
            timeout: project.agent_timeout,
            fleet: None,
        });
    }
    Err(bad_input(format!(
        "env: {name:?} is not declared (no {}); declare it with `deployctl declare env agent {name} --address http://HOST:7070`",
        path.display()
    )))
}

/// The env's CA certificate (PEM) and token, read from its `ca_file` and `token_file`.
fn credentials(
    project: &Project,
    path: &Path,
    env: &EnvDecl,
) -> anyhow::Result<(Option<Vec<u8>>, Option<String>)> {
    let at = path.display();
    let ca_pem = match &env.ca_file {
        Some(f) => {
            let p = expand(f, &project.root);
            Some(std::fs::read(&p).map_err(|e| {
                bad_input(format!("{at}: ca_file: cannot read {}: {e}", p.display()))
            })?)
        }
        None => None,
    };
    let token = match &env.token_file {
        Some(f) => {
            let p = expand(f, &project.root);
            let t = std::fs::read_to_string(&p).map_err(|e| {
                bad_input(format!(
                    "{at}: token_file: cannot read {}: {e}",
                    p.display()
                ))
            })?;
            let t = t.trim().to_string();
            // Checked here, before any agent is asked, so that it is bad input (exit 2).
            if tonic::metadata::MetadataValue::try_from(format!("Bearer {t}")).is_err() {
                return Err(bad_input(format!(
                    "{at}: token_file: {} holds characters a header cannot carry",
                    p.display()
                )));
            }
            Some(t)
        }
        None => None,
    };
    Ok((ca_pem, token))
}

/// Checks env `name`'s declaration at `path` (when it is declared and when it is used).
pub(crate) fn validate_env(name: &str, path: &Path, env: &EnvDecl) -> anyhow::Result<()> {
    let at = path.display();
    if env.object_type != "env" {
        return Err(bad_input(format!("{at}: object_type: must be \"env\"")));
    }
    match env.kind.as_str() {
        "agent" => {}
        "fleet" => return super::fleet::validate(&at.to_string(), env),
        other => {
            return Err(bad_input(format!(
                "{at}: type: {other:?} is not an env type (available: agent, fleet)"
            )))
        }
    }
    if env.registry.is_some() || env.select.is_some() || env.count.is_some() {
        return Err(bad_input(format!(
            "{at}: registry, select and count are for fleet envs (type: fleet), not type agent"
        )));
    }
    if env.addresses.is_empty() {
        return Err(bad_input(format!(
            "{at}: addresses: at least one agent address is required"
        )));
    }
    for a in &env.addresses {
        validate_address(a).map_err(|e| bad_input(format!("{at}: addresses: {e}")))?;
    }
    if env.token_file.is_some() {
        refuse_plain_remote(name, path, &env.addresses)?;
    }
    Ok(())
}

/// A bearer token over plain http:// to another machine can be read (and replayed) by
/// anyone on the path, so an env with a token may not use one. This runs before anything
/// connects: nothing is sent.
fn refuse_plain_remote(name: &str, path: &Path, addresses: &[String]) -> anyhow::Result<()> {
    let Some(address) = addresses
        .iter()
        .map(|a| normalize(a))
        .find(|a| a.starts_with("http://") && !is_loopback(a))
    else {
        return Ok(());
    };
    let secure = address.replacen("http://", "https://", 1);
    Err(bad_input(format!(
        "env {name} ({}): addresses: {address} is plain http:// to another machine, so the token from token_file would be sent unencrypted; refused (nothing was sent). Use {secure} with ca_file (the CA that `deploy-agent init` made), e.g. `deployctl declare env agent {name} --address {secure} --ca-file CA.pem`",
        path.display()
    )))
}

/// Envs already warned about in this command (one warning each, however often resolved).
static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// On loopback the token stays on this machine, but still travels unencrypted: say so,
/// once per env and command, on stderr (never in JSON output).
fn warn_plain_loopback(name: &str, addresses: &[String]) {
    let plain: Vec<&str> = addresses
        .iter()
        .filter(|a| a.starts_with("http://"))
        .map(String::as_str)
        .collect();
    if plain.is_empty() {
        return;
    }
    let first = match WARNED.lock() {
        Ok(mut warned) => warned.insert(name.to_string()),
        Err(_) => true,
    };
    if first {
        eprintln!(
            "warning: env {name} sends its token unencrypted over plain http:// to {} (loopback only, so it stays on this machine); use https:// with ca_file to encrypt it",
            plain.join(", ")
        );
    }
}

/// Whether an address's host is this machine: a loopback IP (127.0.0.0/8, ::1) or
/// `localhost`. Any other name may resolve elsewhere, so it does not count.
fn is_loopback(address: &str) -> bool {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let Some((host, _port)) = rest.trim_end_matches('/').rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT`.
pub(crate) fn validate_address(a: &str) -> Result<(), String> {
    let a = a.trim();
    let rest = a
        .strip_prefix("https://")
        .or_else(|| a.strip_prefix("http://"))
        .unwrap_or(a);
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{a:?} is not an agent address (http://HOST:PORT)")),
    }
}

/// Addresses are shown and stored as `http://HOST:PORT`.
pub(crate) fn normalize(a: &str) -> String {
    let a = a.trim().trim_end_matches('/');
    if a.contains("://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_127_slash_8_ipv6_one_and_localhost_only() {
        for a in [
            "http://127.0.0.1:7070",
            "http://127.0.105.9:7070",
            "http://[::1]:7070",
            "http://localhost:7070",
            "127.0.0.1:7070",
        ] {
            assert!(is_loopback(a), "{a}");
        }
        for a in [
            "http://10.0.0.5:7070",
            "http://192.0.2.1:7070",
            "http://[2001:db8::1]:7070",
            "http://localhost.example.org:7070",
            "http://agent:7070",
            "http://0.0.0.0:7070",
        ] {
            assert!(!is_loopback(a), "{a}");
        }
    }

    #[test]
    fn a_token_over_http_to_another_machine_is_refused_naming_env_address_and_fix() {
        let addresses = vec!["https://10.0.0.4:7070".into(), "10.0.0.5:7070".into()];
        let err = refuse_plain_remote("prod", Path::new("/p/prod.env.yaml"), &addresses)
            .expect_err("refused");
        let msg = format!("{err:#}");
        assert!(msg.contains("env prod"), "{msg}");
        assert!(msg.contains("http://10.0.0.5:7070"), "{msg}");
        assert!(msg.contains("https://10.0.0.5:7070 with ca_file"), "{msg}");
        assert_eq!(crate::error::exit_code(&err), 2);
        let fine = vec![
            "https://10.0.0.5:7070".into(),
            "http://127.0.0.1:7070".into(),
        ];
        assert!(refuse_plain_remote("prod", Path::new("/p/prod.env.yaml"), &fine).is_ok());
    }
}
