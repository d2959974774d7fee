//! Which files the admin commands (`init`, `user`, `group`) change: the running agent's.
//! `--data-dir` (or `DEPLOY_AGENT_DATA_DIR`, as for the agent), else `--config FILE`'s
//! `data_dir`, else — neither given — the system config `/etc/deploy-agent/config.toml`
//! (what scripts/install.sh installs and the systemd unit passes) when it exists, else
//! systemd's `STATE_DIRECTORY`, else the default data directory. `auth_file` in the config
//! (or `--auth-file`) is honoured, as the agent does. Without a flag, two different
//! `auth.toml`s where the agent may look is refused rather than guessed.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// Where the system config is, unless `$DEPLOY_AGENT_SYSTEM_CONFIG` says otherwise.
pub const SYSTEM_CONFIG: &str = "/etc/deploy-agent/config.toml";

/// How the admin commands found the agent's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `--data-dir` (or `DEPLOY_AGENT_DATA_DIR`), with the `--config` file if any.
    DataDirFlag { config: Option<PathBuf> },
    /// `--config FILE` (or `DEPLOY_AGENT_CONFIG`).
    ConfigFlag(PathBuf),
    /// Neither given: the system config, which exists.
    SystemConfig(PathBuf),
    /// Neither given and no system config: `STATE_DIRECTORY` or the default data directory.
    Default,
}

/// `$DEPLOY_AGENT_SYSTEM_CONFIG`, else `/etc/deploy-agent/config.toml`.
pub fn system_config_path() -> PathBuf {
    std::env::var_os("DEPLOY_AGENT_SYSTEM_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG))
}

/// systemd's `STATE_DIRECTORY` (the first one), else [`crate::config::default_data_dir`]:
/// the data directory when no flag and no config file names one.
pub fn fallback_data_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| {
            v.to_string_lossy()
                .split(':')
                .next()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(crate::config::default_data_dir)
}

/// Which config file an admin command reads: the given one, else the system config when it
/// exists (and no `--data-dir` was given).
pub fn find(data_dir_given: bool, config: Option<&Path>) -> Found {
    match (data_dir_given, config) {
        (true, c) => Found::DataDirFlag {
            config: c.map(Path::to_path_buf),
        },
        (false, Some(c)) => Found::ConfigFlag(c.to_path_buf()),
        (false, None) => {
            let system = system_config_path();
            if system.is_file() {
                Found::SystemConfig(system)
            } else {
                Found::Default
            }
        }
    }
}

impl Found {
    /// The config file to load, if any.
    pub fn config_file(&self) -> Option<&Path> {
        match self {
            Found::DataDirFlag { config } => config.as_deref(),
            Found::ConfigFlag(c) | Found::SystemConfig(c) => Some(c),
            Found::Default => None,
        }
    }

    /// `deploy-agent` with the flags that find these files again, for printed hints
    /// (`sudo` first when run through sudo).
    pub fn command(&self, config: &Config, auth_file_flag: bool) -> String {
        let mut cmd = String::new();
        if nix::unistd::geteuid().is_root() && std::env::var_os("SUDO_USER").is_some() {
            cmd.push_str("sudo ");
        }
        cmd.push_str("deploy-agent");
        match self {
            Found::DataDirFlag { config: c } => {
                if let Some(c) = c {
                    cmd.push_str(&format!(" --config {}", shell_word(c)));
                }
                cmd.push_str(&format!(" --data-dir {}", shell_word(&config.data_dir)));
            }
            Found::ConfigFlag(c) => cmd.push_str(&format!(" --config {}", shell_word(c))),
            Found::SystemConfig(_) | Found::Default => {}
        }
        if auth_file_flag {
            cmd.push_str(&format!(" --auth-file {}", shell_word(&config.auth_path())));
        }
        cmd
    }
}

/// No flag said which `auth.toml`, and there are two different ones where the agent may
/// look: the system config's and the default data directory's.
#[derive(Debug)]
pub struct Ambiguous {
    pub found: Vec<PathBuf>,
    pub system_config: PathBuf,
}

impl std::fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "which agent's users? two different auth files: {} (from {}) and {} (the default \
             data directory); say which with --config FILE or --data-dir DIR",
            self.found[0].display(),
            self.system_config.display(),
            self.found[1].display()
        )
    }
}

impl std::error::Error for Ambiguous {}

/// Refuses when no flag chose the files, the system config's `auth.toml` is not the
/// default data directory's, and both exist with different contents.
pub fn check_unambiguous(found: &Found, config: &Config) -> Result<(), Ambiguous> {
    let Found::SystemConfig(system) = found else {
        return Ok(());
    };
    let chosen = config.auth_path();
    let other = fallback_data_dir().join("auth.toml");
    let same_file = match (chosen.canonicalize(), other.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        // One of them does not exist (or cannot be reached): nothing to choose between.
        _ => return Ok(()),
    };
    if same_file {
        return Ok(());
    }
    match (std::fs::read(&chosen), std::fs::read(&other)) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        _ => Err(Ambiguous {
            found: vec![chosen, other],
            system_config: system.clone(),
        }),
    }
}

/// A path as one shell word (quoted when it needs to be).
pub fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@~%=".contains(c));
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_hints_repeat_the_flags() {
        let config = Config {
            data_dir: PathBuf::from("/srv/my data"),
            ..Config::default()
        };
        let found = find(true, None);
        let cmd = found.command(&config, false);
        assert!(
            cmd.ends_with("deploy-agent --data-dir '/srv/my data'"),
            "{cmd}"
        );
        let found = find(false, Some(Path::new("/etc/a.toml")));
        assert_eq!(found.config_file(), Some(Path::new("/etc/a.toml")));
        assert!(found
            .command(&config, true)
            .ends_with("deploy-agent --config /etc/a.toml --auth-file '/srv/my data/auth.toml'"));
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
    }
}
