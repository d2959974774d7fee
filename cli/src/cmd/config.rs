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
        "where the state lives: a path (relative to the project), file:///path, etcd://HOST:PORT/PREFIX or s3://BUCKET/PREFIX [default: .deployctl/state.json]",
    ),
    (
        "core.state.endpoint",
        "the S3 endpoint of an s3:// state (an S3-compatible store: MinIO, R2, Ceph RGW, ...) [default: AWS_ENDPOINT_URL, else AWS S3]",
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
etcd that does not answer, a missing bucket, credentials the store refuses, a file that is
not a state) is refused and the setting stays, unless --force. A file's missing directory
is created. Then it says what the new state and the previous one hold, and how to copy what
only the previous one has:
  deployctl config set core.state.uri etcd://10.0.0.5:2379/ml-team
  deployctl state copy --from .deployctl/state.json

An s3:// state is one object, BUCKET/PREFIX/state.json, changed only by conditional writes
(If-Match on its ETag), so no concurrent writer loses an update. Credentials and region come
from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), AWS_REGION; the endpoint
from core.state.endpoint, else AWS_ENDPOINT_URL, else AWS S3:
  deployctl config set core.state.endpoint https://minio.internal:9000
  deployctl config set core.state.uri s3://ml-team/deployctl

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
                "core.state.endpoint" => project.state_endpoint().unwrap_or_default(),
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
                "core.state.endpoint" => {
                    let url = value.trim();
                    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                    if !url.is_empty() && !scheme_ok {
                        return Err(bad_input(format!(
                            "core.state.endpoint: {value:?} is not an http:// or https:// URL"
                        )));
                    }
                    let state = config.core.state.get_or_insert_with(Default::default);
                    state.endpoint = Some(url.to_string()).filter(|u| !u.is_empty());
                }
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
