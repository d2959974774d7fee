//! How a deploy (or a restart) reaches the env's agents: in waves (a canary first, when
//! asked), each wave to its agents at once, each agent's progress shown as it goes.

use std::sync::Arc;

use deployctl_proto::v1 as pb;

use super::{report, AgentResult, NotDeployed, Rollout};
use crate::client::{self, AgentError, Call, CallError, Limit, Target};
use crate::output::{Format, Progress};

/// What is asked of each agent: a deploy, or a new process of the current release.
#[derive(Debug, Clone)]
pub(super) enum Ask {
    Deploy(Box<Deploy>),
    Restart(pb::RestartRequest),
}

/// A deploy as each agent gets it.
#[derive(Debug, Clone)]
pub(super) struct Deploy {
    pub spec: pb::DeploymentSpec,
    /// Per agent: the generation the deploy is based on (an agent not named: no check).
    pub bases: std::collections::BTreeMap<String, u64>,
    /// The id the agents keep its result by.
    pub id: String,
}

/// `restart` and `start`: a new process of `name`'s current release on every agent of
/// `target`, in waves; its progress shown like a deploy's. Nothing is recorded in the
/// state's history (the release is the same).
pub(crate) async fn relaunch(
    name: &str,
    target: &Target,
    only_if_stopped: bool,
    rollout: Rollout,
    format: Format,
) -> anyhow::Result<()> {
    let progress = Arc::new(Progress::new(format, target.addresses.len(), false));
    let ask = Ask::Restart(pb::RestartRequest {
        name: name.to_string(),
        only_if_stopped,
    });
    let results = deploy_in_waves(target, &ask, &progress, rollout, format).await;
    report::report(name, &results, format)
}

/// Deploys wave after wave (see [`Rollout`]); once a wave has a failed agent, the agents
/// of the later waves are not touched.
pub(super) async fn deploy_in_waves(
    target: &Target,
    spec: &Ask,
    progress: &Arc<Progress>,
    rollout: Rollout,
    format: Format,
) -> Vec<AgentResult> {
    let waves = rollout.waves(&target.addresses);
    let mut results = Vec::new();
    let mut stopped_by: Option<String> = None;
    for (i, wave) in waves.iter().enumerate() {
        if let Some(why) = &stopped_by {
            results.extend(wave.iter().map(|address| AgentResult {
                address: address.clone(),
                accepted: false,
                outcome: Err(NotDeployed::Skipped(why.clone())),
            }));
            continue;
        }
        if format == Format::Text && waves.len() > 1 {
            let what = if rollout.canary && i == 0 {
                "canary".to_string()
            } else {
                format!("wave {}/{}", i + 1, waves.len())
            };
            println!("→ {what}: {}", wave.join(", "));
        }
        let wave_target = Target {
            addresses: wave.clone(),
            ..target.clone()
        };
        let done = deploy_everywhere(&wave_target, spec, progress).await;
        let failed: Vec<String> = done
            .iter()
            .filter(|r| !matches!(&r.outcome, Ok(o) if o.ok))
            .map(|r| r.address.clone())
            .collect();
        if !failed.is_empty() && i + 1 < waves.len() {
            stopped_by = Some(if rollout.canary && i == 0 {
                format!("not deployed: the canary {} failed", failed.join(", "))
            } else {
                format!(
                    "not deployed: the rollout stopped after {} failed",
                    failed.join(", ")
                )
            });
        }
        results.extend(done);
    }
    results
}

/// Deploys to every agent at once: each must take the request within the timeout; then
/// its event stream lasts as long as the deploy, while the agent answers keepalive pings.
async fn deploy_everywhere(
    target: &Target,
    spec: &Ask,
    progress: &Arc<Progress>,
) -> Vec<AgentResult> {
    let (spec, progress) = (spec.clone(), progress.clone());
    let replies = client::for_each_agent(target, Limit::Stream, move |c| {
        deploy_one(c, spec.clone(), progress.clone())
    });
    replies
        .all()
        .await
        .into_iter()
        .map(|r| match r.result {
            Ok(result) => result,
            // Not connected: the deploy did not start there.
            Err(e) => AgentResult {
                address: r.address,
                accepted: false,
                outcome: Err(NotDeployed::Failed(e.message)),
            },
        })
        .collect()
}

/// One agent's deploy (or restart): the request sent, then its events followed to the
/// outcome. An agent that refuses the request, or refuses it as stale when its turn comes,
/// did not take it.
async fn deploy_one(
    mut c: Call,
    ask: Ask,
    progress: Arc<Progress>,
) -> Result<AgentResult, CallError> {
    let address = c.address.clone();
    let fail = |why: NotDeployed| AgentResult {
        address: address.clone(),
        accepted: false,
        outcome: Err(why),
    };
    let mut stream = match send(&mut c, &ask, &address).await {
        Ok(stream) => stream,
        Err(why) => return Ok(fail(why)),
    };
    let bar = progress.agent(&address);
    let followed = follow(&c, &mut stream, &bar, &ask).await;
    bar.finish();
    Ok(match followed {
        Ok(outcome) => AgentResult {
            address,
            accepted: true,
            outcome,
        },
        Err(refused) => fail(refused),
    })
}

/// Sends the deploy or restart to the agent of `c`: its event stream, or why the agent did
/// not take it (invalid, stale, or anything else).
async fn send(
    c: &mut Call,
    ask: &Ask,
    address: &str,
) -> Result<tonic::Streaming<pb::DeployEvent>, NotDeployed> {
    // Without a declared owner the agent makes the caller the owner: the token's user, or
    // (on an agent without authentication) this user.
    let reply = match ask {
        Ask::Deploy(d) => {
            let request = pb::DeployRequest {
                spec: Some(d.spec.clone()),
                default_owner: format!("user:{}", crate::client::caller()),
                expected_generation: d.bases.get(address).copied(),
                deploy_id: d.id.clone(),
            };
            client::answer(c.timeout, c.client.deploy(request)).await
        }
        Ask::Restart(request) => client::answer(c.timeout, c.client.restart(request.clone())).await,
    };
    match reply {
        Ok(r) => Ok(r.into_inner()),
        Err(CallError::Status(s)) if s.code() == tonic::Code::InvalidArgument => {
            Err(NotDeployed::BadInput(s.message().to_string()))
        }
        Err(CallError::Status(s)) if s.code() == tonic::Code::FailedPrecondition => {
            Err(NotDeployed::Stale(s.message().to_string()))
        }
        Err(e) => Err(NotDeployed::Failed(
            AgentError::from_call(address, e).message,
        )),
    }
}

/// Shows the agent's events as they come, until the outcome (then what follows it, until
/// the agent ends the stream): the outcome, or why it is not known (the stream ended or
/// broke first). Err: the agent refused the deploy when its turn came (stale).
async fn follow(
    c: &Call,
    stream: &mut tonic::Streaming<pb::DeployEvent>,
    bar: &crate::output::AgentProgress,
    ask: &Ask,
) -> Result<Result<pb::DeployOutcome, NotDeployed>, NotDeployed> {
    let address = &c.address;
    loop {
        match stream.message().await {
            Ok(Some(mut event)) => {
                report::name_env(&mut event, c.env());
                bar.event(&event);
                if let Some(outcome) = event.outcome {
                    // The deploy answered at the switch; what follows (the previous
                    // release's drain) is shown until the agent ends the stream.
                    after_outcome(stream, bar).await;
                    return Ok(Ok(outcome));
                }
            }
            Ok(None) => {
                return Ok(Err(lost(ask, format!(
                    "{address} ended the deploy's stream without a result (see `deployctl logs --deploy`)"
                ))))
            }
            // Refused when its turn came: based on a generation the deployment left.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                return Err(NotDeployed::Stale(s.message().to_string()));
            }
            Err(s) => {
                return Ok(Err(lost(ask, format!(
                    "lost the connection to {address} during the deploy: {}",
                    c.broken(&s).await
                ))))
            }
        }
    }
}

/// Why a deploy's (or restart's) outcome is not known (`why`), and what learns it.
fn lost(ask: &Ask, why: String) -> NotDeployed {
    match ask {
        Ask::Deploy(d) => NotDeployed::Lost(format!(
            "{why}; how the deploy ends there is not known: the next deployctl command that reaches the agent (e.g. `deployctl history {}`) records the agent's outcome",
            d.spec.name
        )),
        Ask::Restart(_) => NotDeployed::Failed(format!(
            "{why}; it may still finish there: check `deployctl status`"
        )),
    }
}

/// The events an agent sends after a deploy's outcome (how long the previous release took
/// to drain), until it ends the stream. The outcome is known: a broken stream only ends
/// the wait.
async fn after_outcome(
    stream: &mut tonic::Streaming<pb::DeployEvent>,
    bar: &crate::output::AgentProgress,
) {
    while let Ok(Some(event)) = stream.message().await {
        bar.event(&event);
    }
}
