//! How `status` shows instances: a table (with the reasons for every instance that is not
//! healthy), or the JSON document scripts rely on.

use deployctl_proto::v1 as pb;
use serde_json::json;

use super::lines::{data_line, event_lines, failed_deploy_line, kernel_lines, proxy_lines, size};
use super::scaling::{scaling_lines, with_scaling};
use super::{Deployment, Unanswered};
use crate::output;

pub(super) fn print_json(out: &[Deployment], unanswered: &[Unanswered]) {
    let deployments: Vec<_> = out
        .iter()
        .map(|d| {
            let instances: Vec<_> = d
                .instances
                .iter()
                .map(|i| match &i.s {
                    Some(s) => with_scaling(s, with_data(s, json!({
                        "agent": i.agent, "state": s.state, "release": s.release,
                        "ref": s.git_ref, "commit": s.commit, "pid": s.pid,
                        "restarts": s.restarts, "url": s.url, "uptime_s": s.uptime_s,
                        "cpu_percent": s.cpu_percent, "memory_bytes": s.memory_bytes,
                        "last_health": s.last_health, "message": s.message,
                        "packages_hash": s.packages_hash, "port": s.port,
                        "last_exit_code": if s.last_exit_code >= 0 { json!(s.last_exit_code) } else { json!(null) },
                        "next_restart_in_s": s.next_restart_in_s,
                        "private_address": s.private_address,
                        "limits": limits_json(s),
                        "memory_limit_bytes": memory_limit(s.kernel.as_ref()),
                        "oom_kills": s.kernel.as_ref().map_or(0, |k| k.oom_kills),
                        "oom_killed": s.kernel.as_ref().is_some_and(|k| k.oom_killed),
                        "cpu_periods": s.kernel.as_ref().map_or(0, |k| k.cpu_periods),
                        "cpu_throttled_periods": s.kernel.as_ref().map_or(0, |k| k.cpu_throttled_periods),
                        "cpu_throttled_seconds": s.kernel.as_ref().map_or(0.0, |k| k.cpu_throttled_seconds),
                        "replicas": s.replicas.iter().map(|r| json!({
                            "pid": r.pid, "private_address": r.private_address, "state": r.state,
                            "restarts": r.restarts, "cpu_percent": r.cpu_percent,
                            "memory_bytes": r.memory_bytes,
                            "last_health": r.last_health, "message": r.message,
                            "memory_limit_bytes": memory_limit(r.kernel.as_ref()),
                            "oom_kills": r.kernel.as_ref().map_or(0, |k| k.oom_kills),
                            "cpu_throttled_periods": r.kernel.as_ref().map_or(0, |k| k.cpu_throttled_periods),
                            "cpu_throttled_seconds": r.kernel.as_ref().map_or(0.0, |k| k.cpu_throttled_seconds),
                        })).collect::<Vec<_>>(),
                        "switched_at": if s.switched_at > 0 { json!(s.switched_at) } else { json!(null) },
                        "previous_drained_ms": if s.previous_drained_ms >= 0 { json!(s.previous_drained_ms) } else { json!(null) },
                        "last_event": if s.last_event.is_empty() { json!(null) } else { json!(s.last_event) },
                        "last_event_at": if s.last_event_at > 0 { json!(s.last_event_at) } else { json!(null) },
                        "adopted_at": if s.adopted_at > 0 { json!(s.adopted_at) } else { json!(null) },
                        "failed_deploy": s.failed_deploy.as_ref().map(|f| json!({
                            "release": f.release, "step": f.step, "reason": f.reason, "at": f.at,
                        })),
                        "traffic": s.traffic.as_ref().map(|t| json!({
                            "requests_per_second": t.requests_per_second,
                            "p50_ms": if t.p50_ms >= 0.0 { json!(t.p50_ms) } else { json!(null) },
                            "p99_ms": if t.p99_ms >= 0.0 { json!(t.p99_ms) } else { json!(null) },
                            "error_rate": t.error_rate,
                            "in_flight": t.in_flight,
                            "window_s": t.window_s,
                        })),
                    }))),
                    None => json!({
                        "agent": i.agent, "state": i.state, "release": 0, "ref": "", "commit": "",
                        "pid": 0, "restarts": 0, "url": "", "uptime_s": 0, "cpu_percent": 0.0,
                        "memory_bytes": 0, "message": i.note,
                    }),
                })
                .collect();
            json!({"name": d.name, "owner": d.owner, "env": d.env, "instances": instances})
        })
        .collect();
    if unanswered.is_empty() {
        println!("{}", json!({ "deployments": deployments }));
    } else {
        let agents: Vec<_> = unanswered
            .iter()
            .map(|u| json!({"env": u.env, "agent": u.agent, "error": u.error}))
            .collect();
        println!(
            "{}",
            json!({ "deployments": deployments, "unreachable_agents": agents })
        );
    }
}

pub(super) fn print_text(out: &[Deployment], unanswered: &[Unanswered], detail: bool) {
    print_deployments(out, detail);
    for u in unanswered {
        println!("  env {}: {}", u.env, u.error);
    }
    if !unanswered.is_empty()
        && unanswered.len() == unanswered.iter().filter(|u| u.env == "local").count()
    {
        println!(
            "  no agent is running here: start the local one with `deployctl local start` (`deployctl run` starts the local one too), or start `deploy-agent` yourself (see `deploy-agent --help`)"
        );
    }
}

fn print_deployments(out: &[Deployment], detail: bool) {
    if out.is_empty() {
        println!("no deployments");
        return;
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .flat_map(|d| d.instances.iter().map(move |i| row(d, i)))
        .collect();
    output::table(
        &[
            "NAME", "ENV", "AGENT", "STATE", "RELEASE", "REF", "COMMIT", "PID", "UPTIME",
            "RESTARTS", "CPU", "MEM", "TRAFFIC", "URL",
        ],
        &rows,
    );
    // Reasons, always for instances that are not healthy, and everything with NAME.
    for d in out {
        for i in &d.instances {
            for line in notes(i, detail) {
                println!("  {} @ {}: {line}", d.name, i.agent);
            }
        }
    }
}

/// One instance's row of the table.
fn row(d: &Deployment, i: &super::Instance) -> Vec<String> {
    let Some(s) = &i.s else {
        let mut row = vec![
            d.name.clone(),
            d.env.clone(),
            i.agent.clone(),
            i.state.clone(),
        ];
        row.resize(14, "-".into());
        return row;
    };
    vec![
        d.name.clone(),
        d.env.clone(),
        i.agent.clone(),
        s.state.clone(),
        s.release.to_string(),
        s.git_ref.clone(),
        crate::output::short_commit(&s.commit).to_string(),
        match (s.pid, s.replicas.len()) {
            (0, _) => "-".into(),
            (pid, 0 | 1) => pid.to_string(),
            (pid, n) => format!("{pid} +{}", n - 1),
        },
        output::age(s.uptime_s),
        s.restarts.to_string(),
        format!("{:.1}%", s.cpu_percent),
        output::bytes(s.memory_bytes),
        traffic_cells(s.traffic.as_ref()).join(" "),
        s.url.clone(),
    ]
}

/// The lines under the table about one instance: a failed deploy always; the rest for an
/// instance that is not healthy, or with NAME (`detail`).
fn notes(i: &super::Instance, detail: bool) -> Vec<String> {
    let mut lines: Vec<String> =
        i.s.as_ref()
            .and_then(failed_deploy_line)
            .into_iter()
            .collect();
    if !(detail || i.state != "healthy") {
        return lines;
    }
    let Some(s) = &i.s else {
        lines.extend((!i.note.is_empty()).then(|| i.note.clone()));
        return lines;
    };
    let mut extra = Vec::new();
    if s.last_exit_code >= 0 {
        extra.push(format!("last exit code {}", s.last_exit_code));
    }
    if s.next_restart_in_s > 0 {
        extra.push(format!("next restart in {}s", s.next_restart_in_s));
    }
    if detail && !s.packages_hash.is_empty() {
        extra.push(format!("packages {}", s.packages_hash));
    }
    if let (true, Some(limits)) = (detail, limits_text(s)) {
        extra.push(format!("limits: {limits}"));
    }
    if !s.last_health.is_empty() {
        lines.push(format!("last check: {}", s.last_health));
    }
    if !s.message.is_empty() {
        lines.push(s.message.clone());
    }
    if !extra.is_empty() {
        lines.push(extra.join(", "));
    }
    lines.extend(kernel_lines(s));
    lines.extend(event_lines(s));
    if detail {
        lines.extend(proxy_lines(s));
        lines.extend(scaling_lines(s));
        lines.extend(data_line(s));
    }
    lines
}

/// An instance's JSON with its `DATA_DIR` (and, in a status of one deployment, what it
/// holds: `data_bytes`, `cache_bytes`).
fn with_data(s: &pb::DeploymentStatus, mut v: serde_json::Value) -> serde_json::Value {
    v["data_dir"] = json!(s.data_dir);
    v["data_bytes"] = json!(s.data_bytes);
    v["cache_bytes"] = json!(s.cache_bytes);
    v
}

fn memory_limit(k: Option<&pb::KernelStats>) -> serde_json::Value {
    match k.map(|k| k.memory_limit_bytes) {
        Some(b) if b > 0 => json!(b),
        _ => serde_json::Value::Null,
    }
}

/// The deployment's declared resource limits (`resources`), `null` when none is set.
fn limits_json(s: &pb::DeploymentStatus) -> serde_json::Value {
    let Some(r) = s.spec.as_ref().and_then(|s| s.resources.as_ref()) else {
        return serde_json::Value::Null;
    };
    let set = |v: u64| (v > 0).then_some(v);
    json!({
        "memory_bytes": set(r.memory),
        "cpus": (r.cpus > 0.0).then_some(r.cpus),
        "pids": set(u64::from(r.pids)),
        "gpus": r.gpus,
        "build_memory_bytes": set(r.build_memory),
    })
}

/// The limits in a few words: "memory 4 GiB, cpus 1.5, pids 2048".
fn limits_text(s: &pb::DeploymentStatus) -> Option<String> {
    let r = s.spec.as_ref()?.resources.as_ref()?;
    let mut parts = Vec::new();
    if r.memory > 0 {
        parts.push(format!("memory {}", size(r.memory)));
    }
    if r.cpus > 0.0 {
        parts.push(format!("cpus {}", r.cpus));
    }
    if r.pids > 0 {
        parts.push(format!("pids {}", r.pids));
    }
    if r.gpus > 0 {
        parts.push(format!("gpus {}", r.gpus));
    }
    if r.build_memory > 0 {
        parts.push(format!("build memory {}", size(r.build_memory)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The last minute's traffic through the node proxy in a few words: "12.3/s p99 20ms 0%5xx".
fn traffic_cells(t: Option<&deployctl_proto::v1::Traffic>) -> Vec<String> {
    let Some(t) = t else {
        return vec!["-".into()];
    };
    let mut cells = vec![format!("{:.1}/s", t.requests_per_second)];
    if t.p99_ms >= 0.0 {
        cells.push(format!("p99 {}", ms(t.p99_ms)));
    }
    if t.error_rate > 0.0 {
        cells.push(format!("{:.1}% 5xx", t.error_rate * 100.0));
    }
    cells
}

pub(super) fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}ms")
    } else {
        format!("{v:.0}ms")
    }
}
