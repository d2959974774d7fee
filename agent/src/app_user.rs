//! Which user apps and start scripts run as. An app runs whatever its repository says, so
//! when the agent serves several users, an app running as the agent's own user (root under
//! systemd) could read every owner's secrets, `auth.toml` and the TLS key. With users, apps
//! therefore run as an unprivileged user: `run_as`, or by default `deploy-app` (made by
//! `scripts/install.sh`), and the agent refuses to start when it would run them as itself,
//! unless `apps_as_agent_user = true` says that is wanted. Without users (one person's
//! laptop, the auto-started local agent) apps run as the agent's user, as before.

use crate::config::Config;
use crate::error::{Error, Result};

/// The user apps run as on a node with users when `run_as` is not set, if it exists.
pub(crate) const DEFAULT_APP_USER: &str = "deploy-app";

/// The uid and gid apps run as (`None`: the agent's own). Blocking: reads `auth.toml`.
pub(crate) fn resolve(config: &Config) -> Result<Option<(u32, u32)>> {
    let has_users = !crate::auth::AuthFile::load(&config.auth_path())?
        .users
        .is_empty();
    let root = nix::unistd::geteuid().is_root();
    let explicit = config.run_as.as_deref().filter(|n| !n.is_empty());
    let chosen = match explicit {
        Some(name) if root => Some(lookup(name)?),
        Some(name) => {
            tracing::warn!(
                run_as = name,
                "run_as is ignored: the agent does not run as root"
            );
            None
        }
        None if has_users && root && !config.apps_as_agent_user => lookup(DEFAULT_APP_USER).ok(),
        None => None,
    };
    let as_agent = chosen.is_none_or(|(uid, _)| uid == nix::unistd::geteuid().as_raw());
    if has_users && as_agent {
        if config.apps_as_agent_user {
            tracing::warn!("apps run as the agent's own user although it has users (apps_as_agent_user = true): an app can read every owner's secrets");
            return Ok(chosen);
        }
        return Err(Error::InvalidInput {
            field: "run_as".into(),
            reason: refusal(root),
        });
    }
    Ok(chosen)
}

fn lookup(name: &str) -> Result<(u32, u32)> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        _ => Err(Error::InvalidInput {
            field: "run_as".into(),
            reason: format!("{name:?} is not a user on this node"),
        }),
    }
}

fn refusal(root: bool) -> String {
    let fix = if root {
        format!("create the user {DEFAULT_APP_USER:?} (scripts/install.sh does: useradd --system --no-create-home --shell /usr/sbin/nologin {DEFAULT_APP_USER}) or set run_as = \"USER\" in the config")
    } else {
        "run the agent as root with run_as = \"USER\" (apps then run as that user)".to_string()
    };
    format!(
        "the agent has users, so apps must not run as the agent's own user (they could read every owner's secrets, auth.toml and the TLS key): {fix}; or set apps_as_agent_user = true to accept that risk"
    )
}
