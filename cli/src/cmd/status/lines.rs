//! The lines `status` prints under the table for an instance: what the kernel did to it,
//! how the node proxy serves it, what happened to it last and a deploy that failed.

use deployctl_proto::v1 as pb;

use super::print::ms;
use crate::output;

/// What the kernel did to the instances, in words: the last exit's OOM kill (unless the
/// message already says so) and CPU throttling ("throttled: 12% of periods").
pub(super) fn kernel_lines(s: &pb::DeploymentStatus) -> Vec<String> {
    let Some(k) = s.kernel.as_ref() else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    if k.oom_killed && !s.message.contains("out of memory") {
        let limit = if k.memory_limit_bytes > 0 {
            format!(" at its {} limit", size(k.memory_limit_bytes))
        } else {
            String::new()
        };
        lines.push(format!("last exit: killed: out of memory{limit}"));
    }
    if k.oom_kills > 0 {
        lines.push(format!(
            "OOM kills in this release: {} (memory limit {})",
            k.oom_kills,
            if k.memory_limit_bytes > 0 {
                size(k.memory_limit_bytes)
            } else {
                "none".into()
            }
        ));
    }
    if k.cpu_throttled_periods > 0 {
        let share = if k.cpu_periods > 0 {
            format!(
                "{:.0}% of periods",
                k.cpu_throttled_periods as f64 * 100.0 / k.cpu_periods as f64
            )
        } else {
            format!("{} periods", k.cpu_throttled_periods)
        };
        lines.push(format!(
            "throttled: {share} ({:.1}s held back by the CPU limit)",
            k.cpu_throttled_seconds
        ));
    }
    lines
}

/// A size as a limit is written: "4 GiB" when whole GiB.
pub(super) fn size(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    if b >= GIB && b.is_multiple_of(GIB) {
        format!("{} GiB", b / GIB)
    } else {
        output::bytes(b)
    }
}

/// What its `DATA_DIR` holds (in a status of one deployment): its own files and its caches
/// (`HF_HOME`, `TORCH_HOME`, `XDG_CACHE_HOME`), kept across releases.
pub(super) fn data_line(s: &pb::DeploymentStatus) -> Option<String> {
    let all = s.data_bytes?;
    let cache = s.cache_bytes.unwrap_or(0);
    Some(format!(
        "DATA_DIR {}: {} (its caches, HF_HOME, TORCH_HOME and XDG_CACHE_HOME in .cache: {}), kept across releases",
        s.data_dir,
        output::size(all),
        output::size(cache)
    ))
}

/// How the node proxy serves the deployment: where the app listens, when traffic last
/// switched and how long the old release drained, and the last minute's traffic.
pub(super) fn proxy_lines(s: &deployctl_proto::v1::DeploymentStatus) -> Vec<String> {
    let mut lines = Vec::new();
    if !s.private_address.is_empty() && s.replicas.is_empty() {
        lines.push(format!(
            "the node proxy serves {} from the app at {}",
            s.url, s.private_address
        ));
    }
    if !s.replicas.is_empty() {
        lines.push(format!(
            "the node proxy serves {} from {} replicas:",
            s.url,
            s.replicas.len()
        ));
        for (i, r) in s.replicas.iter().enumerate() {
            lines.push(format!(
                "  {}. pid {} at {}: {}, {} restarts, {:.1}% CPU, {}",
                i + 1,
                r.pid,
                r.private_address,
                r.state,
                r.restarts,
                r.cpu_percent,
                output::bytes(r.memory_bytes)
            ));
            if r.state != "healthy" && !r.message.is_empty() {
                // Why it gets no new requests (or is restarting).
                lines.push(format!("     {}", r.message));
            }
        }
    }
    if s.switched_at > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let ago = now.saturating_sub(s.switched_at).max(0) as u64;
        let mut line = format!(
            "traffic switched to release {} {} ago",
            s.release,
            output::age(ago)
        );
        if s.previous_drained_ms >= 0 {
            line.push_str(&format!(
                "; the previous release drained in {} ms",
                s.previous_drained_ms
            ));
        }
        lines.push(line);
    }
    if let Some(t) = &s.traffic {
        let mut line = format!(
            "last {:.0}s: {:.1} requests/s",
            t.window_s, t.requests_per_second
        );
        if t.p50_ms >= 0.0 {
            line.push_str(&format!(", p50 {}, p99 {}", ms(t.p50_ms), ms(t.p99_ms)));
        }
        line.push_str(&format!(
            ", 5xx {:.1}%, {} in flight",
            t.error_rate * 100.0,
            t.in_flight
        ));
        lines.push(line);
    }
    lines
}

/// Seconds since the Unix epoch.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// "12s ago" for a Unix time.
fn ago(at: i64) -> String {
    format!(
        "{} ago",
        output::age(now_unix().saturating_sub(at).max(0) as u64)
    )
}

/// "last deploy: release 4 failed at health: ... (2m ago); release 3 kept serving", when
/// the last deploy failed while the release shown kept serving.
pub(super) fn failed_deploy_line(s: &pb::DeploymentStatus) -> Option<String> {
    let f = s.failed_deploy.as_ref()?;
    Some(format!(
        "last deploy: release {} failed at {}: {} ({}); release {} kept serving",
        f.release,
        f.step,
        f.reason,
        ago(f.at),
        s.release
    ))
}

/// What happened to it last (kept across agent restarts), and whether this agent
/// re-adopted the app after it restarted.
pub(super) fn event_lines(s: &pb::DeploymentStatus) -> Vec<String> {
    let mut lines = Vec::new();
    // A failed deploy is its own line.
    let said = s
        .failed_deploy
        .as_ref()
        .is_some_and(|f| f.at == s.last_event_at);
    if !s.last_event.is_empty() && !said {
        lines.push(format!(
            "last event: {} ({})",
            s.last_event,
            ago(s.last_event_at)
        ));
    }
    if s.adopted_at > 0 {
        lines.push(format!(
            "re-adopted after an agent restart {}",
            ago(s.adopted_at)
        ));
    }
    lines
}
