//! `plan NAME` (and `run --dry-run`): what a `run` would change on each agent, changing
//! nothing — like `nomad job plan` or `terraform plan`, down to the package versions: the
//! release running and its ref and commit → the new ref and the commit it names now (the
//! agent resolves it); the environment reused or built, with the packages added, removed
//! or changed against the running release's exact versions; every other changed field;
//! agents that have it and would not, or would newly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use deployctl_proto::v1 as pb;
use serde_json::{json, Value};

use super::flags::DeployFlags;
use crate::client::{self, Call, Limit};
use crate::decl::{self, DeploymentDecl};
use crate::error::bad_input;
use crate::output::{short_commit, Format};
use crate::project::Project;
use crate::state;

mod packages;

use packages::packages_diff;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl plan iris                  what `deployctl run --load iris` would change
  deployctl plan iris --ref v2.0.0     ... with a flag changed (nothing is written)
  deployctl run iris --ref v2.0.0 --dry-run   the same
  deployctl plan iris --output json

Exit codes: 0 the plan was made (changes or not), 1 an agent could not say, 2 bad input.")]
pub(crate) struct Args {
    /// The deployment (its declaration NAME.deploy.yaml)
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub flags: DeployFlags,
}

/// Time for an agent to resolve a ref on a remote (listing its refs).
const RESOLVE_TIME: Duration = Duration::from_secs(60);

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    decl::validate_name("NAME", &args.name)?;
    let path = project.deployment_file(&args.name);
    let existing: Option<DeploymentDecl> = decl::load(&path)?;
    let Some(mut d) = existing.or_else(|| {
        args.flags
            .repo
            .is_some()
            .then(super::flags::new_declaration)
    }) else {
        return Err(bad_input(format!(
            "NAME: {} does not exist; give --repo and --command to plan a new deployment",
            path.display()
        )));
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| project.root.clone());
    args.flags.apply(&mut d, &cwd, &project.root)?;
    d.validate(&args.name)?;
    show(project, &args.name, &d, format).await
}

/// Asks every agent of `d`'s env what a deploy of `d` would do, and shows it.
pub(crate) async fn show(
    project: &Project,
    name: &str,
    d: &DeploymentDecl,
    format: Format,
) -> anyhow::Result<()> {
    let env = d.env.clone().unwrap_or_else(|| project.default_env());
    let mut target = client::resolve_env(project, &env)?.no_autostart();
    let store = state::open(project)?;
    // A fleet env: the agents a run would pick, and why.
    let fleet = match target.fleet.clone() {
        Some(fleet) => {
            let running = super::run::running_on(&*store, name).await;
            let choices = fleet.choose(d, &running);
            target.addresses = choices
                .iter()
                .filter(|c| c.picked)
                .map(|c| c.address.clone())
                .collect();
            Some((fleet, choices))
        }
        None => None,
    };
    let mut spec = d.to_spec(name, &project.root)?;
    // A plan downloads nothing: an unpinned artifact is shown as one a run downloads.
    spec.allow_unpinned_artifacts = true;
    let request = pb::DeployRequest {
        spec: Some(spec.clone()),
        default_owner: format!("user:{}", client::caller()),
        ..Default::default()
    };
    let replies = client::for_each_agent(
        &target,
        Limit::Within(target.timeout + RESOLVE_TIME),
        move |mut c: Call| {
            let request = request.clone();
            async move { Ok(c.client.plan(request).await?.into_inner()) }
        },
    );
    let mut agents = Vec::new();
    let mut failed = false;
    for r in replies.all().await {
        let v = match r.result {
            Ok(reply) => agent_plan(&r.address, &spec, &reply),
            Err(e) => {
                failed = true;
                json!({"agent": r.address, "error": e.message, "changes": true})
            }
        };
        agents.push(v);
    }
    // Agents that run it now (by the state) and are not in the env any more.
    let st = store.load().await.ok();
    let leaving: Vec<String> = st
        .as_ref()
        .and_then(|s| s.deployments.get(name))
        .map(|e| {
            e.instances
                .keys()
                .filter(|a| !target.addresses.contains(a))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let changes = !leaving.is_empty() || agents.iter().any(|a| a["changes"] == true);
    match format {
        Format::Json => println!(
            "{}",
            json!({"name": name, "env": env, "changes": changes, "agents": agents,
                   "not_in_env": leaving,
                   "fleet": fleet.as_ref().map(|(f, c)| f.explain(c))})
        ),
        Format::Text => {
            println!("Plan for {name} on env {env} (nothing is changed):");
            if let Some((f, c)) = &fleet {
                f.print(c);
            }
            for a in &agents {
                print_agent(a);
            }
            for l in &leaving {
                println!(
                    "  {l}: runs {name} but is not in env {env}: a run leaves it there (remove it there with the env's old address, or keep it)"
                );
            }
            if !changes {
                println!(
                    "No changes: a run would deploy the same commit, environment and settings."
                );
            }
        }
    }
    if failed {
        return Err(crate::error::Reported.into());
    }
    Ok(())
}

/// One agent's plan as JSON: the text is made from it too.
fn agent_plan(address: &str, spec: &pb::DeploymentSpec, r: &pb::PlanReply) -> Value {
    let new = json!({"ref": r.git_ref, "commit": r.commit});
    let artifacts: Vec<Value> = r
        .artifacts
        .iter()
        .map(|a| json!({"path": a.path, "url": a.url, "stored": a.stored, "bytes": a.bytes}))
        .collect();
    let Some(current_spec) = r.current_spec.as_ref().filter(|_| r.has_current) else {
        return json!({"agent": address, "current": null, "new": new,
            "environment": r.environment, "environment_key": r.environment_key,
            "packages": packages_diff(&[], &[], &spec.pip), "artifacts": artifacts,
            "fields": [], "changes": true});
    };
    let code_changes = r.commit.is_empty() || r.commit != r.current_commit;
    let packages = packages_diff(&current_spec.pip, &r.current_frozen, &spec.pip);
    let fields = fields_diff(current_spec, spec);
    let changes = code_changes
        || r.environment != "reused" && r.environment != "none"
        || !fields.is_empty()
        || !super::status::serves(&r.state);
    json!({
        "agent": address,
        "state": r.state,
        "current": {"release": r.current_release, "ref": r.current_ref, "commit": r.current_commit,
                    "packages_hash": r.current_packages_hash},
        "new": new,
        "environment": r.environment,
        "environment_key": r.environment_key,
        "packages": packages,
        "artifacts": artifacts,
        "fields": fields,
        "changes": changes,
    })
}

/// The agent's defaults where the request leaves a field unset, so that an unset field
/// and its default compare equal.
fn with_defaults(s: &pb::DeploymentSpec, owner: &str) -> pb::DeploymentSpec {
    let mut s = s.clone();
    let or = |v: &mut u64, d: u64| {
        if *v == 0 {
            *v = d
        }
    };
    if s.port == 0 {
        s.port = 8000;
    }
    or(&mut s.health_timeout_ms, 120_000);
    or(&mut s.health_interval_ms, 5_000);
    if s.health_unhealthy_after == 0 {
        s.health_unhealthy_after = 3;
    }
    if s.health_restart_after == 0 {
        s.health_restart_after = s.health_unhealthy_after.max(6);
    }
    or(&mut s.kill_timeout_ms, 10_000);
    or(&mut s.drain_timeout_ms, 30_000);
    or(&mut s.hold_timeout_ms, 10_000);
    if s.idle_timeout_ms > 0 {
        or(&mut s.wake_timeout_ms, 60_000);
    }
    if s.restart.is_empty() {
        s.restart = "on-failure".into();
    }
    if s.strategy.is_empty() {
        s.strategy = "switch".into();
    }
    if s.proxy.is_empty() {
        s.proxy = "http".into();
    }
    // 0 is one replica, except as the min of replicas that follow the load (scale to zero).
    if s.replicas == 0 && s.replicas_max == 0 {
        s.replicas = 1;
    }
    if s.replicas_max > 0 {
        s.target_in_flight = s.target_in_flight.max(1);
        if s.scale_up_after_ms == 0 {
            s.scale_up_after_ms = 10_000;
        }
        if s.scale_down_after_ms == 0 {
            s.scale_down_after_ms = 60_000;
        }
    }
    if s.owner.is_empty() {
        s.owner = owner.to_string();
    }
    s.git_ref.clear();
    s.commit.clear();
    s.pinned.clear();
    s
}

/// Every field other than the ref and the pip packages that differs.
fn fields_diff(current: &pb::DeploymentSpec, new: &pb::DeploymentSpec) -> Vec<Value> {
    let a = serde_json::to_value(decl::from_spec(&with_defaults(current, &current.owner)))
        .unwrap_or(Value::Null);
    let b = serde_json::to_value(decl::from_spec(&with_defaults(new, &current.owner)))
        .unwrap_or(Value::Null);
    let flat = |v: &Value| -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if let Value::Object(m) = v {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("packages" | "health" | "resources", Value::Object(inner)) => {
                        for (k2, v2) in inner {
                            out.insert(format!("{k}.{k2}"), v2.clone());
                        }
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        out
    };
    let (fa, fb) = (flat(&a), flat(&b));
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| !matches!(k.as_str(), "packages.pip" | "ref" | "object_type" | "type"))
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| json!({"field": k, "from": fa.get(k), "to": fb.get(k)}))
        .collect()
}

fn print_agent(a: &Value) {
    let agent = a["agent"].as_str().unwrap_or("?");
    if let Some(e) = a["error"].as_str() {
        println!("  {agent}: cannot plan: {e}");
        return;
    }
    print_code(agent, a);
    print_packages(a);
    for f in a["fields"].as_array().into_iter().flatten() {
        let show = |v: &Value| match v {
            Value::Null => "(unset)".to_string(),
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        println!(
            "    {}: {} → {}",
            f["field"].as_str().unwrap_or(""),
            show(&f["from"]),
            show(&f["to"])
        );
    }
}

/// The release running on the agent → the ref and commit a run would deploy.
fn print_code(agent: &str, a: &Value) {
    let short = |v: &Value| short_commit(v.as_str().unwrap_or("")).to_string();
    let new_ref = a["new"]["ref"].as_str().unwrap_or("");
    let new_commit = if a["new"]["commit"].as_str().unwrap_or("").is_empty() {
        "commit known after fetching".to_string()
    } else {
        short(&a["new"]["commit"])
    };
    let Some(c) = a["current"].as_object() else {
        println!("  {agent}: not deployed here → deploys {new_ref} ({new_commit})");
        return;
    };
    let cur = format!(
        "release {} ({} {})",
        c.get("release").and_then(Value::as_u64).unwrap_or(0),
        c.get("ref").and_then(Value::as_str).unwrap_or(""),
        short(c.get("commit").unwrap_or(&Value::Null))
    );
    if c.get("commit") == Some(&a["new"]["commit"]) {
        println!("  {agent}: {cur} → same commit ({new_ref})");
    } else {
        println!("  {agent}: {cur} → {new_ref} ({new_commit})");
    }
    let state = a["state"].as_str().unwrap_or("");
    if !super::status::serves(state) && !state.is_empty() {
        println!("    state now: {state}");
    }
}

/// The environment reused or built, and each package added, removed or changed.
fn print_packages(a: &Value) {
    let key = a["environment_key"].as_str().unwrap_or("");
    let env = match a["environment"].as_str().unwrap_or("") {
        "none" => "no packages: the node's python3".to_string(),
        "reused" => format!("environment {key} reused (nothing to install)"),
        "built" => format!("environment {key} built"),
        _ => "environment: reused or built, depending on the requirements file at the new commit"
            .to_string(),
    };
    println!("    {env}");
    let artifacts: Vec<String> = a["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let path = x["path"].as_str().unwrap_or("");
            if x["stored"] == true {
                let size = crate::output::bytes(x["bytes"].as_u64().unwrap_or(0));
                format!("{path} reused ({size} on the node)")
            } else {
                format!("{path} downloaded ({})", x["url"].as_str().unwrap_or(""))
            }
        })
        .collect();
    if !artifacts.is_empty() {
        println!("    artifacts: {}", artifacts.join(", "));
    }
    let p = &a["packages"];
    let installed = |v: &Value| {
        v["installed"]
            .as_str()
            .map(|i| format!(" (installed now: {i})"))
            .unwrap_or_default()
    };
    let declared = |x: &Value| x["declared"].as_str().unwrap_or("").to_string();
    for x in p["added"].as_array().into_iter().flatten() {
        println!("      + {}{}", declared(x), installed(x));
    }
    for x in p["removed"].as_array().into_iter().flatten() {
        println!("      - {}{}", declared(x), installed(x));
    }
    for x in p["changed"].as_array().into_iter().flatten() {
        println!(
            "      ~ {} → {}{}",
            x["from"].as_str().unwrap_or(""),
            x["to"].as_str().unwrap_or(""),
            installed(x)
        );
    }
}
