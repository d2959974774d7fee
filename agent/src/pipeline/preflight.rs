//! Before anything is fetched: the secrets the deployment lists exist for its owner, and
//! its port is not another deployment's or a foreign process's.

use super::events::{self, Events, StepError};
use crate::ports;
use crate::spec::Spec;
use crate::supervisor::Supervisor;

/// Every secret the deployment lists must exist for its owner; from here on their values
/// (and the owner's git credential) are hidden in everything the deploy reports.
pub(super) async fn check_secrets(
    sup: &Supervisor,
    spec: &Spec,
    events: &Events,
) -> Result<(), StepError> {
    let (redactor, missing) = sup.secrets().redactor(spec).await;
    if !missing.is_empty() {
        // Commands that work as printed (deployctl adds the env: this agent does not know it).
        let commands: Vec<String> = missing
            .iter()
            .map(|name| format!("`deployctl secret set --owner {} {name}`", spec.owner))
            .collect();
        let (secrets, them) = if missing.len() == 1 {
            ("secret", "it")
        } else {
            ("secrets", "them")
        };
        return Err(StepError::new(
            events::SECRETS,
            format!(
                "{} has no {secrets} {}: set {them} with {} (the value on standard input), or deploy with --owner set to an owner that has {them}",
                spec.owner,
                missing.join(", "),
                commands.join(" and ")
            ),
        ));
    }
    events.set_redactor(redactor);
    Ok(())
}

/// A port another deployment here holds is refused (named only when it has the same
/// owner: another owner's deployments are not revealed); a foreign process on it is reported.
pub(super) async fn check_port(sup: &Supervisor, spec: &Spec) -> Result<(), StepError> {
    let (first, last) = sup.config().ports;
    if spec.port < first || spec.port > last {
        return Err(StepError::new(
            events::PORT,
            format!(
                "port {} is outside the ports this agent gives deployments ({first}-{last}: `ports` in its config); ports below 1024 are the node's own services'",
                spec.port
            ),
        ));
    }
    if let Some((other, owner)) = sup.registry().port_owner(spec.port, &spec.name) {
        let by = if owner == spec.owner {
            format!(" by {owner}'s deployment {other:?}")
        } else {
            String::new()
        };
        return Err(StepError::new(
            events::PORT,
            format!(
                "port {} is in use on this node{by}; choose another port (--port)",
                spec.port
            ),
        ));
    }
    foreign_port_holder(sup, spec).await
}

/// A process this agent does not manage listening where the app would.
pub(super) async fn foreign_port_holder(sup: &Supervisor, spec: &Spec) -> Result<(), StepError> {
    let host = sup.config().app_host;
    let mut ours = sup.registry().running_pids();
    // The node proxy holds the ports of deployments behind it.
    ours.extend(sup.proxy().pid().await);
    let tracker = sup.tracker().clone();
    // A process of one of our instances (found by its cgroup or marker) is never foreign,
    // even when it left its group or its leader is gone.
    // The agent itself keeps a duplicate of each of the proxy's listening sockets.
    let agent = std::process::id();
    let foreign = ports::foreign_holder(host, spec.port, ours, move |pid| {
        pid == agent || tracker.owner_of(pid).is_some()
    })
    .await;
    if let Some((listener, pid)) = foreign {
        let who = match pid {
            Some(pid) => ports::describe_process(pid).await,
            None => "a process this agent cannot see (another user's)".to_string(),
        };
        return Err(StepError::new(
            events::PORT,
            format!(
                "port {} on {} is in use by {who}, which deploy-agent does not manage (listening on {}:{}); stop it or choose another port (--port)",
                spec.port, host, listener.addr, listener.port
            ),
        ));
    }
    Ok(())
}

/// The deployment's own user and directories, before anything of it is written or run.
pub(super) async fn identity(
    sup: &Supervisor,
    d: &crate::deployment::Deployment,
) -> Result<(), StepError> {
    sup.ensure_identity(d)
        .await
        .map(|_| ())
        .map_err(|e| StepError::new(events::CHECKOUT, e))
}

/// The resources the deployment asks for: limits this node can enforce, and room for
/// them (memory within `overcommit` of the node's, free GPUs), before anything runs.
pub(super) fn resources(sup: &Supervisor, spec: &Spec, replicas: u32) -> Result<(), StepError> {
    let r = &spec.resources;
    let refuse = |why: String| StepError::new(events::START, why);
    let can = sup.tracker().limits().supports();
    for (field, asked, enforced) in [
        ("resources.memory", r.memory.is_some(), can.memory),
        ("resources.cpus", r.cpus.is_some(), can.cpu),
        ("resources.pids", r.pids.is_some(), can.pids),
    ] {
        if asked && !enforced {
            return Err(refuse(format!(
                "{field}: this node cannot enforce it (limits here: {}); remove the limit or deploy to a node with cgroups",
                sup.tracker().limits().describe()
            )));
        }
    }
    let replicas = replicas.max(1);
    let (gpus_total, gpus_committed) = {
        let pool = sup.gpu_pool();
        (pool.total(), pool.held_by_others(&spec.name))
    };
    if r.gpus > 0 && gpus_total == 0 {
        let note = sup.gpu_pool().note().to_string();
        return Err(refuse(format!(
            "resources.gpus: asked for {} GPU{} per replica, this node has none ({note})",
            r.gpus,
            if r.gpus == 1 { "" } else { "s" }
        )));
    }
    // What the other deployments' running replicas were promised (as many as run now:
    // replicas that follow the load count as scaled).
    let committed_memory: u64 = sup
        .registry()
        .all()
        .iter()
        .filter(|d| d.name() != spec.name)
        // A sleeping deployment holds no memory: it wakes only when it has room.
        .filter(|d| !d.is_sleeping())
        .filter_map(|d| {
            let memory = d.current()?.spec.resources.memory.unwrap_or(0);
            Some(memory.saturating_mul(u64::from(d.running_count())))
        })
        .sum();
    let node = crate::capacity::Node {
        memory_bytes: node_memory(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(0),
        gpus: gpus_total,
    };
    crate::capacity::check(
        &node,
        &crate::capacity::Committed {
            memory_bytes: committed_memory,
            gpus: gpus_committed,
        },
        &crate::capacity::Asked {
            memory_bytes: r.memory,
            cpus: r.cpus,
            gpus: r.gpus,
            replicas,
        },
        sup.config().overcommit,
    )
    .map_err(refuse)
}

/// The node's memory in bytes (`/proc/meminfo`); 0 when unknown (then not checked).
pub(crate) fn node_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
