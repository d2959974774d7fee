//! `run NAME [flags]` / `run --load NAME`: write the declaration (flags over the existing
//! one), deploy it to every agent of its env at once with live progress, record the result
//! in the state, and print the URL(s).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;
use tokio::task::JoinSet;

use super::flags::{new_declaration, DeployFlags};
use crate::client::{self, Target};
use crate::decl::{self, DeploymentDecl};
use crate::error::{bad_input, Reported};
use crate::output::{self, Format, Progress};
use crate::project::Project;
use crate::state::{self, AgentResult as AgentOutcome, HistoryEntry, InstanceState};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The deployment's name (its declaration is NAME.deploy.yaml)
    #[arg(value_name = "NAME", required_unless_present = "load")]
    pub name: Option<String>,
    /// Deploy an existing declaration NAME.deploy.yaml as it is
    #[arg(long, value_name = "NAME", conflicts_with = "name")]
    pub load: Option<String>,
    /// Show the installer's and start script's output as it comes
    #[arg(long, short)]
    pub verbose: bool,
    /// Install exactly the package versions of the last good deploy with the same packages
    /// (recorded with `pip freeze`), so a new upstream release changes nothing
    #[arg(long)]
    pub locked: bool,
    #[command(flatten)]
    pub flags: DeployFlags,
}

/// What one agent said about the deploy.
struct AgentResult {
    address: String,
    /// The agent accepted the request (it passed the agent's validation).
    accepted: bool,
    outcome: Result<pb::DeployOutcome, String>,
}

pub async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let (name, loading) = match (&args.name, &args.load) {
        (_, Some(n)) => (n.clone(), true),
        (Some(n), None) => (n.clone(), false),
        (None, None) => return Err(bad_input("NAME: give a deployment name")),
    };
    decl::validate_name("name", &name)?;
    let path = project.deployment_file(&name);
    let existing: Option<DeploymentDecl> = decl::load(&path)?;
    if loading && existing.is_none() {
        return Err(bad_input(format!(
            "--load {name}: {} does not exist; write it with `deployctl declare deployment {name} ...`",
            path.display()
        )));
    }
    if existing.is_none() && args.flags.repo.is_none() {
        return Err(bad_input(format!(
            "repo: {name} has no declaration ({} does not exist), so --repo and --command are required",
            path.display()
        )));
    }
    let mut d = existing.clone().unwrap_or_else(new_declaration);
    let cwd = std::env::current_dir().unwrap_or_else(|_| project.root.clone());
    args.flags.apply(&mut d, &cwd)?;
    d.validate(&name)?;
    let pinned = if args.locked {
        locked_versions(project, &name, &d).await?
    } else {
        Vec::new()
    };
    let how = How {
        format,
        verbose: args.verbose,
        write_back: true,
        pinned,
    };
    deploy(project, &name, d, existing.as_ref(), how).await
}

/// The frozen versions of the last good deploy whose package declaration is the same.
async fn locked_versions(
    project: &Project,
    name: &str,
    d: &DeploymentDecl,
) -> anyhow::Result<Vec<String>> {
    let st = state::open(project)?.load().await?;
    let same_inputs = |h: &&HistoryEntry| {
        h.result == "ok"
            && !h.frozen.is_empty()
            && h.declaration.packages.pip == d.packages.pip
            && h.declaration.requirements == d.requirements
    };
    st.deployments
        .get(name)
        .and_then(|e| e.history.iter().rev().find(same_inputs))
        .map(|h| h.frozen.clone())
        .ok_or_else(|| {
            anyhow!(
                "--locked: no earlier deploy of {name} recorded exact versions for these packages; deploy once without --locked"
            )
        })
}

/// How a deploy runs and is shown.
pub struct How {
    pub format: Format,
    /// Show the installer's output lines.
    pub verbose: bool,
    /// Save the declaration over the existing one once it deployed somewhere.
    pub write_back: bool,
    /// Exact package versions to install (a locked deploy or a rollback).
    pub pinned: Vec<String>,
}

/// Deploys declaration `d` of `name` to every agent of its env, records the result and
/// reports it. With `write_back`, a declaration that deployed somewhere is saved over
/// `existing`.
pub async fn deploy(
    project: &Project,
    name: &str,
    d: DeploymentDecl,
    existing: Option<&DeploymentDecl>,
    how: How,
) -> anyhow::Result<()> {
    let How {
        format,
        verbose,
        write_back,
        pinned,
    } = how;
    let env = d.env.clone().unwrap_or_else(|| project.default_env());
    let target = client::resolve_env(project, &env)?;
    let mut spec = d.to_spec(name, &project.root)?;
    spec.pinned = pinned;
    let store = state::open(project)?;

    if format == Format::Text {
        let at = if spec.git_ref.is_empty() {
            "the remote HEAD"
        } else {
            &spec.git_ref
        };
        println!(
            "Deploying {name} ({} at {at}) to env {env}: {}",
            spec.repo,
            target.addresses.join(", ")
        );
    }
    let progress = Arc::new(Progress::new(format, target.addresses.len(), verbose));
    let results = deploy_everywhere(&target, &spec, &progress).await;

    // The declaration is written back once the deploy worked on an agent: a deploy that
    // fails everywhere (bad ref, broken release, invalid request) changes nothing.
    let deployed = results.iter().any(|r| matches!(&r.outcome, Ok(o) if o.ok));
    if write_back && deployed && existing != Some(&d) {
        decl::save(&project.deployment_file(name), &d)?;
    }
    record(&*store, name, &env, &d, &results).await?;
    report(name, &results, format)
}

async fn deploy_everywhere(
    target: &Target,
    spec: &pb::DeploymentSpec,
    progress: &Arc<Progress>,
) -> Vec<AgentResult> {
    let mut set = JoinSet::new();
    for (i, address) in target.addresses.iter().enumerate() {
        let (target, address, spec, progress) = (
            target.clone(),
            address.clone(),
            spec.clone(),
            progress.clone(),
        );
        set.spawn(async move { (i, deploy_one(&target, &address, spec, &progress).await) });
    }
    let mut results: Vec<(usize, AgentResult)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => results.push((
                usize::MAX,
                AgentResult {
                    address: "?".into(),
                    accepted: false,
                    outcome: Err(format!("internal error: {e}")),
                },
            )),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

async fn deploy_one(
    target: &Target,
    address: &str,
    spec: pb::DeploymentSpec,
    progress: &Progress,
) -> AgentResult {
    let fail = |accepted, msg: String| AgentResult {
        address: address.to_string(),
        accepted,
        outcome: Err(msg),
    };
    let mut client = match client::connect(target, address).await {
        Ok(c) => c,
        Err(e) => return fail(false, format!("{e:#}")),
    };
    // Without a declared owner the agent makes the caller the owner: the token's user, or
    // (on an agent without authentication) this user.
    let request = pb::DeployRequest {
        spec: Some(spec),
        default_owner: format!("user:{}", crate::client::caller()),
    };
    let mut stream = match client.deploy(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            return fail(false, format!("invalid: {}", s.message()))
        }
        Err(s) => return fail(false, client::status_text(address, &s)),
    };
    let bar = progress.agent(address);
    let result = loop {
        match stream.message().await {
            Ok(Some(event)) => {
                if let Some(outcome) = event.outcome.clone() {
                    bar.event(&event);
                    break Ok(outcome);
                }
                bar.event(&event);
            }
            Ok(None) => {
                break Err(format!(
                    "{address} ended the deploy without a result; see `deployctl status` and `deployctl logs --deploy`"
                ))
            }
            Err(s) => {
                break Err(format!(
                    "lost the connection to {address} during the deploy ({}); it may still finish there: check `deployctl status`",
                    s.message()
                ))
            }
        }
    };
    bar.finish();
    AgentResult {
        address: address.to_string(),
        accepted: true,
        outcome: result,
    }
}

async fn record(
    store: &dyn state::StateStore,
    name: &str,
    env: &str,
    d: &DeploymentDecl,
    results: &[AgentResult],
) -> anyhow::Result<()> {
    if !results.iter().any(|r| r.accepted) {
        return Ok(());
    }
    let now = state::now_unix();
    store
        .update(&mut |st| {
            let entry = st.deployments.entry(name.to_string()).or_default();
            let mut agents = BTreeMap::new();
            let mut failure: Option<String> = None;
            let mut shown: Option<&pb::DeployOutcome> = None;
            for r in results.iter().filter(|r| r.accepted) {
                let (release, result) = match &r.outcome {
                    Ok(o) if o.ok => (o.release, "ok".to_string()),
                    Ok(o) => (
                        0,
                        format!("failed at {}: {}", o.failed_step, first_line(&o.reason)),
                    ),
                    Err(e) => (0, format!("failed: {}", first_line(e))),
                };
                if result != "ok" && failure.is_none() {
                    failure = Some(result.clone());
                }
                agents.insert(r.address.clone(), AgentOutcome { release, result });
                let Ok(o) = &r.outcome else { continue };
                if shown.is_none() || (o.ok && !shown.is_some_and(|s| s.ok)) {
                    shown = Some(o);
                }
                if o.ok {
                    entry.instances.insert(
                        r.address.clone(),
                        InstanceState {
                            release: o.release,
                            git_ref: o.git_ref.clone(),
                            commit: o.commit.clone(),
                            packages_hash: o.packages_hash.clone(),
                            url: o.url.clone(),
                            status: "healthy".to_string(),
                            updated_at: now,
                        },
                    );
                } else if let Some(inst) = entry.instances.get_mut(&r.address) {
                    inst.status = if o.kept_healthy {
                        "healthy"
                    } else {
                        "unhealthy"
                    }
                    .to_string();
                    inst.updated_at = now;
                }
            }
            let ok_somewhere = agents.values().any(|a| a.result == "ok");
            if ok_somewhere {
                entry.declaration = d.clone();
                entry.env = env.to_string();
                entry.owner = shown.map(|o| o.owner.clone()).unwrap_or_default();
            }
            let number = entry.next_number();
            entry.history.push(HistoryEntry {
                number,
                time: now,
                git_ref: shown.map(|o| o.git_ref.clone()).unwrap_or_default(),
                commit: shown.map(|o| o.commit.clone()).unwrap_or_default(),
                packages_hash: shown.map(|o| o.packages_hash.clone()).unwrap_or_default(),
                result: failure.clone().unwrap_or_else(|| "ok".to_string()),
                declaration: d.clone(),
                agents,
                frozen: shown.map(|o| o.frozen.clone()).unwrap_or_default(),
            });
            // A first deploy that failed everywhere leaves no deployment behind.
            if entry.instances.is_empty() && !ok_somewhere {
                st.deployments.remove(name);
            }
            Ok(())
        })
        .await
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn report(name: &str, results: &[AgentResult], format: Format) -> anyhow::Result<()> {
    let failed = results
        .iter()
        .filter(|r| !matches!(&r.outcome, Ok(o) if o.ok))
        .count();
    if format == Format::Json {
        for r in results {
            let obj = match &r.outcome {
                Ok(o) => serde_json::json!({
                    "agent": r.address, "result": if o.ok { "ok" } else { "failed" },
                    "release": o.release, "commit": o.commit, "ref": o.git_ref, "url": o.url,
                    "packages_hash": o.packages_hash, "failed_step": o.failed_step,
                    "reason": o.reason, "output_tail": o.output_tail,
                    "kept_release": o.kept_release, "kept_healthy": o.kept_healthy,
                    "total_ms": o.total_ms,
                }),
                Err(e) => serde_json::json!({"agent": r.address, "result": "failed", "reason": e}),
            };
            println!("{obj}");
        }
    } else {
        for r in results {
            let prefix = if results.len() > 1 {
                format!("[{}] ", r.address)
            } else {
                String::new()
            };
            match &r.outcome {
                Ok(o) if o.ok => println!(
                    "{prefix}✓ {name} release {} ({} {}) is live at {} — deployed in {}",
                    o.release,
                    o.git_ref,
                    short(&o.commit),
                    o.url,
                    output::ms(o.total_ms)
                ),
                Ok(o) => {
                    eprintln!(
                        "{prefix}✗ {name}: deploy failed at {}: {}",
                        o.failed_step, o.reason
                    );
                    if !o.output_tail.is_empty() {
                        eprintln!("{prefix}  last output:");
                        for line in o.output_tail.lines() {
                            eprintln!("{prefix}    | {line}");
                        }
                    }
                    if o.kept_release > 0 {
                        let health = if o.kept_healthy {
                            "healthy"
                        } else {
                            "NOT healthy"
                        };
                        eprintln!(
                            "{prefix}  the previous release {} was kept running ({health})",
                            o.kept_release
                        );
                    } else {
                        eprintln!("{prefix}  nothing was running before; nothing runs now");
                    }
                }
                Err(e) => eprintln!("{prefix}✗ {name}: {e}"),
            }
        }
    }
    if failed == 0 {
        return Ok(());
    }
    // A request every agent refused as invalid is bad input (exit 2), not a failed deploy.
    let all_invalid = results
        .iter()
        .all(|r| matches!(&r.outcome, Err(e) if e.starts_with("invalid: ")));
    if all_invalid {
        let msg = match &results[0].outcome {
            Err(e) => e.trim_start_matches("invalid: ").to_string(),
            Ok(_) => String::new(),
        };
        return Err(bad_input(msg).context(Reported));
    }
    if results.len() > 1 && format == Format::Text {
        eprintln!("{failed} of {} instances failed", results.len());
    }
    Err(anyhow!(Reported))
}

fn short(c: &str) -> &str {
    &c[..c.len().min(10)]
}
