//! After a deploy: each agent's result for a person (the URL, or the failed step, its
//! reason and output, and what runs now) or one JSON object per agent; the exit code.

use anyhow::anyhow;

use super::AgentResult;
use crate::error::{bad_input, Reported};
use crate::output::{self, Format};

/// What became of the previous release after a failed deploy: kept running all along, or
/// stopped (to free its port for the new release) and started again.
fn kept_line(o: &deployctl_proto::v1::DeployOutcome) -> String {
    let health = if o.kept_healthy {
        "healthy"
    } else {
        "NOT healthy"
    };
    if o.kept_restarted {
        let pid = if o.kept_pid > 0 {
            format!(" as pid {}", o.kept_pid)
        } else {
            String::new()
        };
        format!(
            "the previous release {} was kept: it had been stopped to free its port, and was started again{pid} ({health})",
            o.kept_release
        )
    } else {
        format!(
            "the previous release {} was kept running ({health})",
            o.kept_release
        )
    }
}

/// Prints each agent's result (one JSON object per agent, or lines for a person), then
/// the exit code: its error when any agent's deploy did not succeed.
pub(super) fn report(name: &str, results: &[AgentResult], format: Format) -> anyhow::Result<()> {
    let failed = results
        .iter()
        .filter(|r| !matches!(&r.outcome, Ok(o) if o.ok))
        .count();
    for r in results {
        if format == Format::Json {
            println!("{}", json_result(r));
        } else {
            let prefix = if results.len() > 1 {
                format!("[{}] ", r.address)
            } else {
                String::new()
            };
            print_result(name, r, &prefix);
        }
    }
    if failed == 0 {
        return Ok(());
    }
    failure(results, failed, format)
}

/// One agent's result as a JSON object.
fn json_result(r: &AgentResult) -> serde_json::Value {
    match &r.outcome {
        Ok(o) => serde_json::json!({
            "agent": r.address, "result": if o.ok { "ok" } else { "failed" },
            "release": o.release, "commit": o.commit, "ref": o.git_ref, "url": o.url,
            "packages_hash": o.packages_hash, "failed_step": o.failed_step,
            "reason": o.reason, "output_tail": o.output_tail,
            "kept_release": o.kept_release, "kept_healthy": o.kept_healthy,
            "kept_restarted": o.kept_restarted, "kept_pid": o.kept_pid,
            "total_ms": o.total_ms,
        }),
        Err(e @ super::NotDeployed::Skipped(_)) => {
            serde_json::json!({"agent": r.address, "result": "skipped", "reason": e.to_string()})
        }
        Err(e @ super::NotDeployed::Lost(_)) => {
            serde_json::json!({"agent": r.address, "result": "unknown", "reason": e.to_string()})
        }
        Err(e) => {
            serde_json::json!({"agent": r.address, "result": "failed", "reason": e.to_string()})
        }
    }
}

/// One agent's result for a person, each line after `prefix`: the URL of the live
/// release, or why it was not deployed.
fn print_result(name: &str, r: &AgentResult, prefix: &str) {
    // What the agent relays of others (a ref, an app's output) cannot steer a terminal.
    let out = output::Stream::Stdout;
    match &r.outcome {
        Ok(o) if o.ok => println!(
            "{prefix}✓ {name} release {} ({} {}) is live at {} — deployed in {}",
            o.release,
            output::visible_on(out, &o.git_ref),
            crate::output::short_commit(&o.commit),
            o.url,
            output::ms(o.total_ms)
        ),
        Ok(o) => print_failed(name, o, prefix),
        Err(e @ super::NotDeployed::Skipped(_)) => eprintln!("{prefix}- {name}: {e}"),
        Err(e) => eprintln!("{prefix}✗ {name}: {e}"),
    }
}

/// A failed deploy for a person: the step and its reason, the last output, and what runs
/// now.
fn print_failed(name: &str, o: &deployctl_proto::v1::DeployOutcome, prefix: &str) {
    let err = output::Stream::Stderr;
    eprintln!(
        "{prefix}✗ {name}: deploy failed at {}: {}",
        o.failed_step,
        output::visible_on(err, &o.reason)
    );
    if !o.output_tail.is_empty() {
        eprintln!("{prefix}  last output:");
        for line in o.output_tail.lines() {
            eprintln!("{prefix}    | {}", output::visible_on(err, line));
        }
    }
    if o.kept_release > 0 {
        eprintln!("{prefix}  {}", kept_line(o));
    } else {
        eprintln!("{prefix}  nothing was running before; nothing runs now");
    }
}

/// The error of a deploy `failed` agents did not succeed on: bad input (exit 2) when every
/// agent refused the request as invalid, otherwise a failure, counted for a person when
/// there were several agents.
fn failure(results: &[AgentResult], failed: usize, format: Format) -> anyhow::Result<()> {
    // A request every agent refused as invalid is bad input (exit 2), not a failed deploy.
    let all_invalid = results
        .iter()
        .all(|r| matches!(&r.outcome, Err(super::NotDeployed::BadInput(_))));
    if all_invalid {
        let msg = match &results[0].outcome {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        return Err(bad_input(msg).context(Reported));
    }
    if results.len() > 1 && format == Format::Text {
        let skipped = results
            .iter()
            .filter(|r| matches!(&r.outcome, Err(super::NotDeployed::Skipped(_))))
            .count();
        if skipped > 0 {
            eprintln!(
                "{} of {} instances failed; {skipped} not deployed (they run what they ran before)",
                failed - skipped,
                results.len()
            );
        } else {
            eprintln!("{failed} of {} instances failed", results.len());
        }
    }
    Err(anyhow!(Reported))
}

/// The agent's hint for a missing secret (`deployctl secret set --owner OWNER NAME`) does
/// not name the env (the agent does not know it): with `--env ENV` it works as printed,
/// whatever the project's default env is.
pub(super) fn name_env(event: &mut deployctl_proto::v1::DeployEvent, env: &str) {
    const SET: &str = "`deployctl secret set --owner ";
    let with_env = format!("`deployctl secret set --env {env} --owner ");
    if event.message.contains(SET) {
        event.message = event.message.replace(SET, &with_env);
    }
    if let Some(o) = event.outcome.as_mut() {
        if o.reason.contains(SET) {
            o.reason = o.reason.replace(SET, &with_env);
        }
    }
}
