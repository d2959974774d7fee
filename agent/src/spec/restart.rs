//! The restart policy: what happens when an app exits or stays unhealthy.

use serde::{Deserialize, Serialize};

/// What to do when the app exits or stays unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "on-failure" => Some(Self::OnFailure),
            "always" => Some(Self::Always),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        }
    }

    /// Whether an exit with this code (0 = clean) should be followed by a restart.
    pub(crate) fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}
