//! How `status` shows instances: a table (with the reasons for every instance that is not
//! healthy), or the JSON document scripts rely on.

use serde_json::json;

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
                    Some(s) => json!({
                        "agent": i.agent, "state": s.state, "release": s.release,
                        "ref": s.git_ref, "commit": s.commit, "pid": s.pid,
                        "restarts": s.restarts, "url": s.url, "uptime_s": s.uptime_s,
                        "cpu_percent": s.cpu_percent, "memory_bytes": s.memory_bytes,
                        "last_health": s.last_health, "message": s.message,
                        "packages_hash": s.packages_hash, "port": s.port,
                        "last_exit_code": if s.last_exit_code >= 0 { json!(s.last_exit_code) } else { json!(null) },
                        "next_restart_in_s": s.next_restart_in_s,
                    }),
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
}

fn print_deployments(out: &[Deployment], detail: bool) {
    if out.is_empty() {
        println!("no deployments");
        return;
    }
    let mut rows = Vec::new();
    for d in out {
        for i in &d.instances {
            let row = match &i.s {
                Some(s) => vec![
                    d.name.clone(),
                    d.env.clone(),
                    i.agent.clone(),
                    s.state.clone(),
                    s.release.to_string(),
                    s.git_ref.clone(),
                    crate::output::short_commit(&s.commit).to_string(),
                    if s.pid > 0 {
                        s.pid.to_string()
                    } else {
                        "-".into()
                    },
                    output::age(s.uptime_s),
                    s.restarts.to_string(),
                    format!("{:.1}%", s.cpu_percent),
                    output::bytes(s.memory_bytes),
                    s.url.clone(),
                ],
                None => vec![
                    d.name.clone(),
                    d.env.clone(),
                    i.agent.clone(),
                    i.state.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ],
            };
            rows.push(row);
        }
    }
    output::table(
        &[
            "NAME", "ENV", "AGENT", "STATE", "RELEASE", "REF", "COMMIT", "PID", "UPTIME",
            "RESTARTS", "CPU", "MEM", "URL",
        ],
        &rows,
    );
    // Reasons, always for instances that are not healthy, and everything with NAME.
    for d in out {
        for i in &d.instances {
            let (health, message, extra) = match &i.s {
                Some(s) => {
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
                    (s.last_health.clone(), s.message.clone(), extra)
                }
                None => (String::new(), i.note.clone(), vec![]),
            };
            let show = detail || i.state != "healthy";
            if !show {
                continue;
            }
            if !health.is_empty() {
                println!("  {} @ {}: last check: {health}", d.name, i.agent);
            }
            if !message.is_empty() {
                println!("  {} @ {}: {message}", d.name, i.agent);
            }
            if !extra.is_empty() {
                println!("  {} @ {}: {}", d.name, i.agent, extra.join(", "));
            }
        }
    }
}
