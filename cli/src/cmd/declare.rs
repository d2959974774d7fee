//! `declare deployment NAME [flags]` and `declare env agent NAME --address A...`: write a
//! declaration file, deploy nothing.

use clap::Subcommand;

use super::flags::{new_declaration, DeployFlags};
use crate::client;
use crate::decl::{self, DeploymentDecl, EnvDecl};
use crate::error::bad_input;
use crate::project::Project;

#[derive(Subcommand, Debug)]
pub(crate) enum Declare {
    /// Write NAME.deploy.yaml (flags override an existing one)
    Deployment {
        name: String,
        #[command(flatten)]
        flags: Box<DeployFlags>,
    },
    /// Write NAME.env.yaml: an env of agents to deploy to
    Env {
        /// The env type (available: agent)
        #[arg(value_name = "TYPE")]
        kind: String,
        name: String,
        /// An agent's address, http://HOST:PORT (repeatable: one instance per agent)
        #[arg(long = "address", value_name = "URL")]
        addresses: Vec<String>,
        /// A file holding the bearer token for the agents
        #[arg(long)]
        token_file: Option<String>,
        /// The CA certificate that signed the agents' certificates
        #[arg(long)]
        ca_file: Option<String>,
    },
}

pub(crate) fn run(project: &Project, cmd: Declare) -> anyhow::Result<()> {
    match cmd {
        Declare::Deployment { name, flags } => {
            decl::validate_name("name", &name)?;
            // A read-modify-write no other command of this project interleaves with.
            let _lock = decl::lock::lock(project, &name)?;
            let path = project.deployment_file(&name);
            let mut d: DeploymentDecl = decl::load(&path)?.unwrap_or_else(new_declaration);
            let cwd = std::env::current_dir().unwrap_or_else(|_| project.root.clone());
            flags.apply(&mut d, &cwd, &project.root)?;
            d.validate(&name)?;
            if let Some(env) = &d.env {
                client::resolve_env(project, env)?;
            }
            decl::save(&path, &d)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Declare::Env {
            kind,
            name,
            addresses,
            token_file,
            ca_file,
        } => {
            decl::validate_name("name", &name)?;
            if kind != "agent" {
                return Err(bad_input(format!(
                    "TYPE: {kind:?} is not an env type (available: agent)"
                )));
            }
            let path = project.env_file(&name);
            let mut env: EnvDecl = decl::load(&path)?.unwrap_or(EnvDecl {
                object_type: "env".into(),
                kind: "agent".into(),
                ..Default::default()
            });
            if !addresses.is_empty() {
                for a in &addresses {
                    client::validate_address(a)
                        .map_err(|e| bad_input(format!("--address: {e}")))?;
                }
                env.addresses = addresses.iter().map(|a| client::normalize(a)).collect();
            }
            if token_file.is_some() {
                env.token_file = token_file;
            }
            if ca_file.is_some() {
                env.ca_file = ca_file;
            }
            client::validate_env(&name, &path, &env)?;
            decl::save(&path, &env)?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}
