//! How a new release replaces the running one, and what the node proxy speaks in front of
//! it: the spec fields `strategy`, `proxy`, `drain_timeout` and `hold_timeout`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a new release replaces the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Strategy {
    /// The new release starts beside the old one on a private port, behind the node proxy
    /// that holds the deployment's port; traffic switches once it is healthy and the old
    /// one drains. No request fails.
    Switch,
    /// The old release is stopped first; the app binds the deployment's port itself (for
    /// apps that cannot bind `$PORT`). A redeploy is an outage as long as the app's start.
    Recreate,
}

impl Strategy {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "switch" => Some(Self::Switch),
            "recreate" => Some(Self::Recreate),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Switch => "switch",
            Self::Recreate => "recreate",
        }
    }

    /// What a record written before strategies existed ran: the app on its port.
    pub(super) fn of_older_records() -> Self {
        Self::Recreate
    }
}

/// What the node proxy speaks on the deployment's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ProxyMode {
    /// HTTP/1.1: requests are balanced and counted; upgrades (WebSocket) pass through.
    #[default]
    Http,
    /// Bytes: each connection goes to one instance (gRPC servers, databases, ...).
    Tcp,
}

impl ProxyMode {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "http" => Some(Self::Http),
            "tcp" => Some(Self::Tcp),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
        }
    }
}

/// How long the old release may finish its in-flight requests after a switch.
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long new requests are held while no instance is healthy.
pub(crate) const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn default_drain() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}

pub(super) fn default_hold() -> Duration {
    DEFAULT_HOLD_TIMEOUT
}
