//! Which user apps and start scripts run as. An app runs whatever its repository says, so
//! it must never run as root, nor as another owner's app:
//!
//! * the agent runs as root: each deployment runs as its own user ([`crate::identity`]),
//!   or, when `run_as` names one, every app as that user (never root);
//! * the agent runs as a user (one person's laptop, the auto-started local agent): apps
//!   run as that user, as the agent can give them no other. With users in `auth.toml`
//!   that would let every app read every owner's secrets, so the agent refuses to start
//!   unless `apps_as_agent_user = true` says that is wanted.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::{self, Identity};

/// How apps get their user on this node.
#[derive(Debug, Clone)]
pub(crate) enum AppUsers {
    /// The agent is not root: apps run as its user.
    Agent,
    /// `run_as`: every app as this user.
    Named(Identity),
    /// Each deployment its own user, from this range of uids.
    PerDeployment((u32, u32)),
}

/// Decides [`AppUsers`] from the config. Blocking: reads `auth.toml` and `/etc/passwd`.
pub(crate) fn resolve(config: &Config) -> Result<AppUsers> {
    let has_users = !crate::auth::AuthFile::load(&config.auth_path())?
        .users
        .is_empty();
    let root = nix::unistd::geteuid().is_root();
    let explicit = config.run_as.as_deref().filter(|n| !n.is_empty());
    if !root {
        if explicit.is_some() {
            tracing::warn!("run_as is ignored: the agent does not run as root");
        }
        if has_users && !config.apps_as_agent_user {
            return Err(Error::InvalidInput {
                field: "run_as".into(),
                reason: "the agent has users, so apps must not run as the agent's own user (they could read every owner's secrets, auth.toml and the TLS key): run the agent as root (each deployment then runs as its own user); or set apps_as_agent_user = true to accept that risk".into(),
            });
        }
        if has_users {
            tracing::warn!("apps run as the agent's own user although it has users (apps_as_agent_user = true): an app can read every owner's secrets");
        }
        return Ok(AppUsers::Agent);
    }
    if config.apps_as_agent_user {
        tracing::warn!(
            "apps_as_agent_user is ignored: the agent runs as root, and apps never run as root"
        );
    }
    let users = match explicit {
        Some(name) => {
            let id = identity::lookup(name).ok_or_else(|| Error::InvalidInput {
                field: "run_as".into(),
                reason: format!("{name:?} is not a user on this node"),
            })?;
            if id.uid == 0 {
                return Err(Error::InvalidInput {
                    field: "run_as".into(),
                    reason: format!("{name:?} is root, and apps never run as root: remove run_as (each deployment then runs as its own user) or name an unprivileged user"),
                });
            }
            AppUsers::Named(id)
        }
        None => AppUsers::PerDeployment(config.app_uids),
    };
    // Apps run from their release directory and venv in here: they must be able to reach it.
    if let Some(closed) = identity::blocked_for_others(&config.data_dir) {
        return Err(Error::InvalidInput {
            field: "data_dir".into(),
            reason: format!(
                "apps run as their own users and could not reach {}: {} is closed to other users; choose a data directory outside it (as root the default is /var/lib/deploy-agent) or let others pass through it (chmod o+x {})",
                config.data_dir.display(),
                closed.display(),
                closed.display()
            ),
        });
    }
    Ok(users)
}
