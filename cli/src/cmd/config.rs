//! `config set KEY VALUE` / `config get KEY`: edit `.deployctl.yaml` in the project root.

use clap::Subcommand;

use crate::decl;
use crate::error::bad_input;
use crate::project::{self, Project, StateConfig};
use crate::state;

/// The keys `config` knows, with what they do.
pub(crate) const KEYS: &[(&str, &str)] = &[
    (
        "core.state.uri",
        "where the state lives: a path (relative to the project), file:///path or etcd://HOST:PORT/PREFIX [default: .deployctl/state.json]",
    ),
    (
        "core.default_env",
        "the env used when a deployment names none [default: local]",
    ),
];

#[derive(Subcommand, Debug)]
pub(crate) enum Config {
    /// Set KEY to VALUE in .deployctl.yaml
    Set { key: String, value: String },
    /// Print KEY's value (its default when unset)
    Get { key: String },
}

fn unknown(key: &str) -> anyhow::Error {
    let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    bad_input(format!(
        "KEY: {key:?} is not a setting (known: {})",
        known.join(", ")
    ))
}

pub(crate) fn run(project: &Project, cmd: Config) -> anyhow::Result<()> {
    match cmd {
        Config::Get { key } => {
            let value = match key.as_str() {
                "core.state.uri" => project.state_uri(),
                "core.default_env" => project.default_env(),
                _ => return Err(unknown(&key)),
            };
            println!("{value}");
            Ok(())
        }
        Config::Set { key, value } => {
            let mut config = project.config.clone();
            match key.as_str() {
                "core.state.uri" => {
                    // Refuse a URI the backends cannot use, before writing it.
                    state::open_uri(project, &value)?;
                    config.core.state = Some(StateConfig { uri: value.clone() });
                }
                "core.default_env" => {
                    decl::validate_name("core.default_env", &value)?;
                    config.core.default_env = Some(value.clone());
                }
                _ => return Err(unknown(&key)),
            }
            let path = project.root.join(project::CONFIG_FILE);
            decl::save(&path, &config)?;
            println!("{key} = {value} (in {})", path.display());
            Ok(())
        }
    }
}
