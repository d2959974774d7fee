//! Replicas that follow the load in `status`: how many run, the range and target, the load
//! the agent sees, and its last scalings ("scaled 1 → 3: 6.2 requests in flight per
//! replica over 10 s, target 2"), in the text (with NAME) and in `--output json`.

use deployctl_proto::v1 as pb;
use serde_json::json;

use crate::output;

/// The range a deployment follows the load within, if it does.
fn range(s: &pb::DeploymentStatus) -> Option<&pb::DeploymentSpec> {
    s.spec.as_ref().filter(|spec| spec.replicas_max > 0)
}

/// Adds `running_replicas`, `autoscale` (null for a fixed count) and `scale_events`.
pub(super) fn with_scaling(
    s: &pb::DeploymentStatus,
    mut v: serde_json::Value,
) -> serde_json::Value {
    v["running_replicas"] = json!(s.running_replicas);
    v["autoscale"] = match range(s) {
        Some(spec) => json!({
            "min": spec.replicas,
            "max": spec.replicas_max,
            "target_in_flight": spec.target_in_flight.max(1),
            "scale_up_after_ms": spec.scale_up_after_ms,
            "scale_down_after_ms": spec.scale_down_after_ms,
            "in_flight_per_replica": (s.in_flight_per_replica >= 0.0).then_some(s.in_flight_per_replica),
        }),
        None => serde_json::Value::Null,
    };
    v["scale_events"] = s
        .scale_events
        .iter()
        .map(|e| json!({"at": e.at, "from": e.from, "to": e.to, "text": e.text}))
        .collect();
    v
}

/// "replicas follow the load: 3 running (1..4, target 2 in flight each; now 1.7)", then
/// the last scalings, newest last, each with how long ago.
pub(super) fn scaling_lines(s: &pb::DeploymentStatus) -> Vec<String> {
    let Some(spec) = range(s) else {
        return Vec::new();
    };
    let mut head = format!(
        "replicas follow the load: {} running ({}..{}, target {} in flight each",
        s.running_replicas,
        spec.replicas,
        spec.replicas_max,
        spec.target_in_flight.max(1)
    );
    if s.in_flight_per_replica >= 0.0 {
        head.push_str(&format!("; now {:.1}", s.in_flight_per_replica));
    }
    head.push(')');
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    std::iter::once(head)
        .chain(s.scale_events.iter().map(|e| {
            let ago = now.saturating_sub(e.at).max(0) as u64;
            format!("  {} ago: {}", output::age(ago), e.text)
        }))
        .collect()
}
