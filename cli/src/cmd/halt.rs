//! What `stop` and `remove` share: the same request to every agent of the env (drain, then
//! stop the app; `remove` also deletes it), each agent given the time its drains and the
//! app's kill timeout may take, and the same words for how each agent stopped it.

use std::time::Duration;

use deployctl_proto::v1 as pb;

use crate::client::{self, Call, CallError, Limit, Target};
use crate::decl::{self, DeploymentDecl};

/// The agent's defaults, when the declaration sets none.
const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_LB_DRAIN: Duration = Duration::from_secs(4);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    /// Stop the app and keep its release and record.
    Stop,
    /// Stop it and delete its directories and record (its DATA_DIR too, unless kept).
    Remove { keep_data: bool },
}

/// One agent's answer: the reply, `None` when it does not have the deployment, or why it
/// failed.
pub(crate) struct Halted {
    pub index: usize,
    pub address: String,
    pub result: Result<Option<pb::RemoveReply>, String>,
}

/// `--drain DURATION`, parsed.
pub(crate) fn drain_flag(drain: Option<&str>) -> anyhow::Result<Option<Duration>> {
    drain
        .map(|d| decl::parse_duration("--drain", d))
        .transpose()
}

/// How long an agent may take: connecting, the load balancer's drain, the requests in
/// flight, the app's kill timeout, and `after` (deleting its directories).
pub(crate) fn limit(
    target: &Target,
    drain: Option<Duration>,
    declared: Option<&DeploymentDecl>,
    after: Duration,
) -> Limit {
    let field = |name: &str, value: Option<&String>, default: Duration| {
        value
            .and_then(|t| decl::parse_duration(name, t).ok())
            .unwrap_or(default)
    };
    let kill = field(
        "kill_timeout",
        declared.and_then(|d| d.kill_timeout.as_ref()),
        DEFAULT_KILL_TIMEOUT,
    );
    let requests = field(
        "drain_timeout",
        declared.and_then(|d| d.drain_timeout.as_ref()),
        DEFAULT_DRAIN_TIMEOUT,
    );
    Limit::Within(target.timeout + drain.unwrap_or(DEFAULT_LB_DRAIN) + requests + kill + after)
}

/// Asks every agent at once; `each` sees each answer as it comes (to print it), and all of
/// them are returned.
pub(crate) async fn each_agent(
    target: &Target,
    halt: Halt,
    name: &str,
    drain: Option<Duration>,
    limit: Limit,
    mut each: impl FnMut(&Halted),
) -> Vec<Halted> {
    let (name, drain_ms) = (name.to_string(), drain.map(|d| d.as_millis() as u64));
    let mut replies = client::for_each_agent(target, limit, move |mut c: Call| {
        let name = name.clone();
        async move {
            let reply = match halt {
                Halt::Stop => c.client.stop(pb::StopRequest { name, drain_ms }).await,
                Halt::Remove { keep_data } => {
                    let req = pb::RemoveRequest {
                        name,
                        drain_ms,
                        keep_data,
                    };
                    c.client.remove(req).await
                }
            };
            match reply {
                Ok(r) => Ok(Some(r.into_inner())),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                Err(s) => Err(CallError::from(s)),
            }
        }
    });
    let mut all = Vec::new();
    while let Some(reply) = replies.next().await {
        let halted = Halted {
            index: reply.index,
            address: reply.address,
            result: reply.result.map_err(|e| e.message),
        };
        each(&halted);
        all.push(halted);
    }
    all
}

/// How an agent stopped it: `pid 4242, terminated; requests in flight finished in 9 ms`.
pub(crate) fn how(r: &pb::RemoveReply) -> String {
    let mut text = match r.pid {
        0 => r.stopped.clone(),
        pid => format!("pid {pid}, {}", r.stopped),
    };
    if r.lb_drained_ms > 0 {
        text.push_str(&format!(
            "; its health endpoint answered 503 for {} first",
            crate::output::ms(r.lb_drained_ms)
        ));
    }
    if r.requests_drained_ms > 0 {
        text.push_str(&format!(
            "; requests in flight finished in {}",
            crate::output::ms(r.requests_drained_ms)
        ));
    }
    text
}

/// The answers in the env's order, as JSON (`key`: "removed" or "stopped").
pub(crate) fn json(name: &str, mut all: Vec<(usize, serde_json::Value)>) -> serde_json::Value {
    all.sort_by_key(|(i, _)| *i);
    let instances: Vec<_> = all.into_iter().map(|(_, j)| j).collect();
    serde_json::json!({"name": name, "instances": instances})
}
