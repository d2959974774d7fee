//! `remove NAME`: drain it on every agent of its env (its load-balancer health endpoint
//! answers 503 for `--drain` while it still serves, then the requests in flight finish),
//! stop it (SIGTERM to its process group, SIGKILL after the kill timeout), delete its
//! working directories and its DATA_DIR (kept with `--keep-data`), erase its state entry.
//! The declaration file stays.

use std::time::Duration;

use anyhow::anyhow;

use super::halt::{self, Halt, Halted};
use crate::client;
use crate::decl;
use crate::output::Format;
use crate::project::Project;
use crate::state;

/// Time for an agent to delete a deployment's directories once its app stopped.
const CLEANUP_TIME: Duration = Duration::from_secs(20);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The deployment to remove (as in `deployctl status`).
    pub name: String,
    /// How long each agent lets load balancers see the deployment's health endpoint
    /// (/deployments/NAME/health) answer 503 while it still serves, before it stops:
    /// two of their check intervals. "0s" stops at once. [default: the agent's lb_drain, 4s]
    #[arg(long, value_name = "DURATION")]
    pub drain: Option<String>,
    /// Keep the deployment's own directory (DATA_DIR) on each node: deploying NAME again
    /// (same owner) finds it; `deployctl remove NAME` without the flag deletes it
    #[arg(long)]
    pub keep_data: bool,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let name = &args.name;
    decl::validate_name("name", name)?;
    let store = state::open(project)?;
    let st = store.load().await?;
    let in_state = st.deployments.contains_key(name);
    let (env, declared) = state::env_of(project, &st, name)?;
    // Starts the built-in local agent when nothing answers: its apps outlive it.
    let target = client::resolve_env(project, &env)?;
    // An agent answers once the app stopped (up to its kill timeout) and its directories
    // are gone; a hung agent is found earlier by the keepalive pings.
    let drain = halt::drain_flag(args.drain.as_deref())?;
    let limit = halt::limit(&target, drain, declared.as_ref(), CLEANUP_TIME);
    let print = |h: &Halted| {
        if let (Ok(Some(r)), Format::Text) = (&h.result, format) {
            println!(
                "✓ removed {name} from {} ({}); {}",
                h.address,
                halt::how(r),
                data_left(name, r)
            );
        }
    };
    let halt = Halt::Remove {
        keep_data: args.keep_data,
    };
    let all = halt::each_agent(&target, halt, name, drain, limit, print).await;
    let removed = all
        .iter()
        .filter(|h| matches!(h.result, Ok(Some(_))))
        .count();
    let errors: Vec<&str> = all
        .iter()
        .filter_map(|h| h.result.as_ref().err())
        .map(String::as_str)
        .collect();
    if !errors.is_empty() {
        return Err(anyhow!(
            "could not remove {name} everywhere (the state entry is kept):\n  {}",
            errors.join("\n  ")
        ));
    }
    if !in_state && removed == 0 {
        return Err(anyhow!(
            "deployment {name:?} not found (not in the state, not on any agent of env {env})"
        ));
    }
    if removed == 0 {
        // "Not found" is also what the agents answer for another owner's deployment: the
        // shared state's entry is erased only for a caller who may touch it.
        let owner = st
            .deployments
            .get(name)
            .map(|e| e.owner.clone())
            .unwrap_or_default();
        if let Some(me) = client::who_am_i(&target).await {
            if !client::may_touch(&me, &owner) {
                return Err(anyhow!(
                    "{name} belongs to {owner}, and {} may not remove it: the agents answer \"not found\" for what a caller may not see, so it may well be running; nothing was changed (not on the agents, not in the state)",
                    client::named(&me)
                ));
            }
        }
    }
    store
        .update(&mut |s| {
            s.deployments.remove(name);
            Ok(())
        })
        .await?;
    if format == Format::Json {
        println!("{}", halt::json(name, all.iter().map(to_json).collect()));
    } else if removed == 0 {
        println!("✓ {name} was not running on any agent; removed it from the state");
    }
    Ok(())
}

fn to_json(h: &Halted) -> (usize, serde_json::Value) {
    let json = match &h.result {
        Ok(Some(r)) => serde_json::json!({"agent": h.address, "removed": true, "pid": r.pid,
            "stopped": r.stopped, "lb_drained_ms": r.lb_drained_ms,
            "requests_drained_ms": r.requests_drained_ms,
            "data": {"kept": r.data_kept, "bytes": r.data_bytes, "dir": r.data_dir}}),
        Ok(None) => {
            serde_json::json!({"agent": h.address, "removed": false, "reason": "not found"})
        }
        Err(e) => serde_json::json!({"agent": h.address, "removed": false, "reason": e}),
    };
    (h.index, json)
}

/// What became of its DATA_DIR on one agent.
fn data_left(name: &str, r: &deployctl_proto::v1::RemoveReply) -> String {
    let size = crate::output::size(r.data_bytes);
    if r.data_kept {
        format!(
            "DATA_DIR kept ({size} in {}): deploying {name} again finds it, `deployctl remove {name}` deletes it",
            r.data_dir
        )
    } else {
        format!("DATA_DIR deleted ({size})")
    }
}
