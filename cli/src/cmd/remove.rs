//! `remove NAME`: drain it on every agent of its env (its load-balancer health endpoint
//! answers 503 for `--drain` while it still serves, then the requests in flight finish),
//! stop it (SIGTERM to its process group, SIGKILL after the kill timeout), delete its
//! working directories, erase its state entry. The declaration file stays.

use std::time::Duration;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use crate::client::{self, Call, CallError, Limit};
use crate::decl;
use crate::output::Format;
use crate::project::Project;
use crate::state;

/// The agent's default SIGTERM-to-SIGKILL grace period, when the declaration sets none.
const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// The agent's default lb_drain and drain timeout, when nothing else is known.
const DEFAULT_LB_DRAIN: Duration = Duration::from_secs(4);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
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
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let name = &args.name;
    decl::validate_name("name", name)?;
    let store = state::open(project)?;
    let st = store.load().await?;
    let in_state = st.deployments.get(name);
    let (env, declared) = state::env_of(project, &st, name)?;
    // Starts the built-in local agent when nothing answers: its apps outlive it.
    let target = client::resolve_env(project, &env)?;
    // An agent answers once the app stopped (up to its kill timeout) and its directories
    // are gone; a hung agent is found earlier by the keepalive pings.
    let kill_timeout = declared
        .as_ref()
        .and_then(|d| d.kill_timeout.clone())
        .and_then(|t| decl::parse_duration("kill_timeout", &t).ok())
        .unwrap_or(DEFAULT_KILL_TIMEOUT);
    let drain = args
        .drain
        .as_deref()
        .map(|d| decl::parse_duration("--drain", d))
        .transpose()?;
    let drain_timeout = declared
        .as_ref()
        .and_then(|d| d.drain_timeout.clone())
        .and_then(|t| decl::parse_duration("drain_timeout", &t).ok())
        .unwrap_or(DEFAULT_DRAIN_TIMEOUT);
    let limit = Limit::Within(
        target.timeout
            + drain.unwrap_or(DEFAULT_LB_DRAIN)
            + drain_timeout
            + kill_timeout
            + CLEANUP_TIME,
    );
    let request = pb::RemoveRequest {
        name: name.clone(),
        drain_ms: drain.map(|d| d.as_millis() as u64),
    };
    let mut replies = client::for_each_agent(&target, limit, move |mut c: Call| {
        let request = request.clone();
        async move {
            match c.client.remove(request).await {
                Ok(r) => Ok(Some(r.into_inner())),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                Err(s) => Err(CallError::from(s)),
            }
        }
    });
    let mut removed = 0;
    let mut errors = Vec::new();
    let mut results = Vec::new();
    // Each agent's result as it comes.
    while let Some(reply) = replies.next().await {
        let address = &reply.address;
        let json = match reply.result {
            Ok(Some(r)) => {
                removed += 1;
                if format == Format::Text {
                    let pid = if r.pid > 0 {
                        format!("pid {}, ", r.pid)
                    } else {
                        String::new()
                    };
                    let mut drained = String::new();
                    if r.lb_drained_ms > 0 {
                        drained.push_str(&format!(
                            "; its health endpoint answered 503 for {} first",
                            crate::output::ms(r.lb_drained_ms)
                        ));
                    }
                    if r.requests_drained_ms > 0 {
                        drained.push_str(&format!(
                            "; requests in flight finished in {}",
                            crate::output::ms(r.requests_drained_ms)
                        ));
                    }
                    println!(
                        "✓ removed {name} from {address} ({pid}{}{drained})",
                        r.stopped
                    );
                }
                serde_json::json!({"agent": address, "removed": true, "pid": r.pid, "stopped": r.stopped,
                    "lb_drained_ms": r.lb_drained_ms, "requests_drained_ms": r.requests_drained_ms})
            }
            Ok(None) => {
                serde_json::json!({"agent": address, "removed": false, "reason": "not found"})
            }
            // Named together at the end, with what that means for the state.
            Err(e) => {
                errors.push(e.message);
                continue;
            }
        };
        results.push((reply.index, json));
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
        results.sort_by_key(|(i, _)| *i);
        let results: Vec<_> = results.into_iter().map(|(_, j)| j).collect();
        println!(
            "{}",
            serde_json::json!({"name": name, "instances": results})
        );
    } else if removed == 0 {
        println!("✓ {name} was not running on any agent; removed it from the state");
    }
    Ok(())
}
