//! The autoscaler's decision, pure: a window of samples of the node proxy's requests in
//! flight (each taken with the replica count of its time) → add replicas, remove one, or
//! stay. Like Knative's: up in one jump to what the load needs, down one at a time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::spec::Autoscale;

/// How often the node proxy's in-flight counts are sampled.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// One sample: the requests in flight on the deployment's route, how many of its replicas
/// were ready (in the route), and how many ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub at: Instant,
    pub in_flight: u64,
    pub ready: u32,
    pub running: u32,
}

impl Sample {
    /// Requests in flight per ready replica (all of them on one when none is ready).
    pub(crate) fn per_replica(&self) -> f64 {
        self.in_flight as f64 / f64::from(self.ready.max(1))
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Stay,
    /// Scale from `from` to `to` replicas: `per_replica` is the average requests in
    /// flight per ready replica over `over` that decided it.
    Scale {
        from: u32,
        to: u32,
        per_replica: f64,
        over: Duration,
    },
}

/// The samples of one deployment, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Window {
    samples: VecDeque<Sample>,
}

impl Window {
    /// Adds `s` and forgets what is older than `keep` (the longer window).
    pub(crate) fn push(&mut self, s: Sample, keep: Duration) {
        self.samples.push_back(s);
        while self
            .samples
            .front()
            .is_some_and(|f| s.at.saturating_duration_since(f.at) > keep + PERIOD)
        {
            self.samples.pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.samples.clear();
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

/// The samples of the last `over` taken while `running` replicas ran, and the average of
/// their totals and of their per-replica figure; `None` unless such samples cover the
/// whole window (a count that changed, or samples that stopped, start it again).
fn averages(samples: &[Sample], running: u32, over: Duration, now: Instant) -> Option<(f64, f64)> {
    let recent: Vec<&Sample> = samples
        .iter()
        .rev()
        .take_while(|s| s.running == running)
        .take_while(|s| now.saturating_duration_since(s.at) <= over + PERIOD / 2)
        .collect();
    let oldest = recent.last()?;
    // Covered: the oldest sample at this count is about a window old (samples each period).
    let span = now.saturating_duration_since(oldest.at);
    if span + PERIOD / 2 < over || recent.len() < 2 {
        return None;
    }
    let n = recent.len() as f64;
    let total = recent.iter().map(|s| s.in_flight as f64).sum::<f64>() / n;
    let per = recent.iter().map(|s| s.per_replica()).sum::<f64>() / n;
    Some((total, per))
}

/// The decision for a deployment that runs `running` replicas, from its `samples`:
/// * below its floor or above `max` (a changed declaration): to the nearest bound;
/// * the average requests in flight per ready replica above the target over
///   `scale_up_after`: up to ceil(average total in flight / target), at most `max`;
/// * the average total low enough over `scale_down_after` that one replica less would
///   still be under the target: down by one.
pub(crate) fn decide(a: &Autoscale, running: u32, samples: &[Sample], now: Instant) -> Decision {
    let target = f64::from(a.target_in_flight.max(1));
    let scale = |to: u32, per_replica: f64, over: Duration| Decision::Scale {
        from: running,
        to,
        per_replica,
        over,
    };
    if running < a.floor() {
        return scale(a.floor(), 0.0, Duration::ZERO);
    }
    if running > a.max {
        return scale(running - 1, 0.0, Duration::ZERO);
    }
    if running < a.max {
        if let Some((total, per)) = averages(samples, running, a.scale_up_after, now) {
            if per > target {
                let wanted = (total / target).ceil() as u32;
                let to = wanted.clamp(running + 1, a.max);
                return scale(to, per, a.scale_up_after);
            }
        }
    }
    if running > a.floor() {
        if let Some((total, per)) = averages(samples, running, a.scale_down_after, now) {
            if total < target * f64::from(running - 1) {
                return scale(running - 1, per, a.scale_down_after);
            }
        }
    }
    Decision::Stay
}

/// What the event says: "scaled 1 → 3: 6.2 requests in flight per replica over 10 s,
/// target 2".
pub(crate) fn describe(
    a: &Autoscale,
    from: u32,
    to: u32,
    per_replica: f64,
    over: Duration,
) -> String {
    if over.is_zero() {
        let bound = if to > from { "min" } else { "max" };
        return format!(
            "scaled {from} → {to}: replicas.{bound} is {}",
            if to > from { a.floor() } else { a.max }
        );
    }
    format!(
        "scaled {from} → {to}: {per_replica:.1} requests in flight per replica over {} s, target {}",
        over.as_secs_f64().round(),
        a.target_in_flight
    )
}

#[cfg(test)]
mod tests;
