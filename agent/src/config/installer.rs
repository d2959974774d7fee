//! Which installer builds Python environments (`installer` in the config).

/// Which installer the agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallerMode {
    /// uv from PATH, else uv installed by the agent, else venv + pip.
    #[default]
    Auto,
    /// uv (from PATH or installed by the agent); never pip.
    Uv,
    /// `python3 -m venv` + pip only.
    Pip,
}

impl InstallerMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "uv" => Some(Self::Uv),
            "pip" => Some(Self::Pip),
            _ => None,
        }
    }
}
