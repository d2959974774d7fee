//! `config set KEY VALUE` / `config get KEY`: edit `.deployctl.yaml` in the project root.

use clap::Subcommand;

use crate::decl;
use crate::error::bad_input;
use crate::project::{self, Project};

mod switch;

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
    #[command(after_help = "\
core.state.uri: before writing it, deployctl reads the new state; one it cannot read (an
etcd that does not answer, a file that is not a state) is refused and the setting stays,
unless --force. A file's missing directory is created. Then it says what the new state and
the previous one hold, and how to copy what only the previous one has:
  deployctl config set core.state.uri etcd://10.0.0.5:2379/ml-team
  deployctl state copy --from .deployctl/state.json

Exit codes: 0 set, 1 the new state cannot be read (nothing changed), 2 bad input.")]
    Set {
        key: String,
        value: String,
        /// core.state.uri: switch even when the new state cannot be read
        #[arg(long)]
        force: bool,
    },
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

pub(crate) async fn run(project: &Project, cmd: Config) -> anyhow::Result<()> {
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
        Config::Set { key, value, force } => {
            let mut config = project.config.clone();
            match key.as_str() {
                "core.state.uri" => return switch::state_uri(project, &value, force).await,
                "core.default_env" => {
                    decl::validate_name("core.default_env", &value)?;
                    config.core.default_env = Some(value.clone());
                }
                _ => return Err(unknown(&key)),
            }
            if force {
                return Err(bad_input("--force: only core.state.uri has it"));
            }
            let path = project.root.join(project::CONFIG_FILE);
            decl::save(&path, &config)?;
            println!("{key} = {value} (in {})", path.display());
            Ok(())
        }
    }
}
