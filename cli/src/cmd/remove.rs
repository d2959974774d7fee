//! `remove NAME`: stop it on every agent of its env (SIGTERM to its process group, SIGKILL
//! after the kill timeout), delete its working directories, erase its state entry. The
//! declaration file stays.

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use crate::client;
use crate::decl::{self, DeploymentDecl};
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub name: String,
}

pub async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let name = &args.name;
    decl::validate_name("name", name)?;
    let store = state::open(project)?;
    let st = store.load().await?;
    let in_state = st.deployments.get(name);
    let env = match in_state {
        Some(d) => d.env.clone(),
        None => decl::load::<DeploymentDecl>(&project.deployment_file(name))?
            .and_then(|d| d.env)
            .unwrap_or_else(|| project.default_env()),
    };
    let mut target = client::resolve_env(project, &env)?;
    target.builtin_local = false;
    let mut removed = 0;
    let mut errors = Vec::new();
    let mut results = Vec::new();
    for address in &target.addresses {
        let mut c = match client::connect(&target, address).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        match c.remove(pb::RemoveRequest { name: name.clone() }).await {
            Ok(r) => {
                let r = r.into_inner();
                removed += 1;
                if format == Format::Text {
                    let pid = if r.pid > 0 {
                        format!("pid {}, ", r.pid)
                    } else {
                        String::new()
                    };
                    println!("✓ removed {name} from {address} ({pid}{})", r.stopped);
                }
                results.push(serde_json::json!({"agent": address, "removed": true, "pid": r.pid, "stopped": r.stopped}));
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                results.push(
                    serde_json::json!({"agent": address, "removed": false, "reason": "not found"}),
                );
            }
            Err(s) => errors.push(client::status_text(address, &s)),
        }
    }
    if !errors.is_empty() {
        return Err(anyhow!(
            "could not remove {name} everywhere (the state entry is kept):\n  {}",
            errors.join("\n  ")
        ));
    }
    if in_state.is_none() && removed == 0 {
        return Err(anyhow!(
            "deployment {name:?} not found (not in the state, not on any agent of env {env})"
        ));
    }
    store
        .update(&mut |s| {
            s.deployments.remove(name);
            Ok(())
        })
        .await?;
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"name": name, "instances": results})
        );
    } else if removed == 0 {
        println!("✓ {name} was not running on any agent; removed it from the state");
    }
    Ok(())
}
