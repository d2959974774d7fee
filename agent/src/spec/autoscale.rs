//! Replicas that follow the load: the spec's `replicas: {min, max, target_in_flight}` with
//! its windows (`scale_up_after`, `scale_down_after`), validated together with `strategy`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fields::invalid;
use super::{Strategy, MAX_REPLICAS};
use crate::error::Error;

/// How long the average must stay above the target before replicas are added.
pub(crate) const DEFAULT_SCALE_UP_AFTER: Duration = Duration::from_secs(10);
/// How long it must stay low enough before one replica is removed.
pub(crate) const DEFAULT_SCALE_DOWN_AFTER: Duration = Duration::from_secs(60);
/// The longest window accepted (a day).
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A deployment whose replica count follows the requests in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Autoscale {
    /// The fewest replicas (0: scale to zero, see [`Autoscale::wants_zero`]).
    pub min: u32,
    /// The most replicas on this node.
    pub max: u32,
    /// Requests in flight per ready replica aimed at.
    pub target_in_flight: u32,
    #[serde(with = "super::millis")]
    pub scale_up_after: Duration,
    #[serde(with = "super::millis")]
    pub scale_down_after: Duration,
}

impl Autoscale {
    /// The fewest replicas that run while it is awake: `min`, but at least one. With
    /// `min: 0` (scale to zero, [`Autoscale::wants_zero`]) the last one goes when no
    /// request came for `scale_down_after`: the deployment sleeps, and the next request
    /// wakes it with one ([`crate::sleep`]).
    pub(crate) fn floor(&self) -> u32 {
        self.min.max(1)
    }

    /// Whether it scales to zero (`min: 0`): it sleeps like one with an `idle_timeout`.
    pub(crate) fn wants_zero(&self) -> bool {
        self.min == 0
    }

    /// How many replicas a deploy (or restart) of this spec starts, given how many run
    /// now (`running`; 0: none): the running count within `[floor, max]`, so a deploy
    /// under load keeps its capacity.
    pub(crate) fn start_count(&self, running: u32) -> u32 {
        running.clamp(self.floor(), self.max)
    }
}

/// `replicas`, `replicas_max`, `target_in_flight` and the windows as the request has them.
pub(crate) struct RawAutoscale {
    pub replicas: u32,
    pub max: u32,
    pub target_in_flight: u32,
    pub scale_up_after_ms: u64,
    pub scale_down_after_ms: u64,
}

/// Several replicas need the node proxy to balance them (`strategy: switch`).
fn needs_switch(field: &str, n: u32, strategy: Strategy) -> Result<(), Error> {
    if n > 1 && strategy == Strategy::Recreate {
        return Err(invalid(
            field,
            format!("{n} replicas need strategy switch (the node proxy balances them); with strategy recreate the app binds the port itself, so one process can"),
        ));
    }
    Ok(())
}

/// The fixed count (`max` 0) or the autoscaled range; every refusal names its field.
pub(super) fn validate(
    raw: &RawAutoscale,
    strategy: Strategy,
) -> Result<(u32, Option<Autoscale>), Error> {
    if raw.max == 0 {
        let replicas = raw.replicas.max(1);
        if replicas > MAX_REPLICAS {
            return Err(invalid(
                "replicas",
                format!("{replicas} is more than {MAX_REPLICAS}"),
            ));
        }
        needs_switch("replicas", replicas, strategy)?;
        return Ok((replicas, None));
    }
    let (min, max) = (raw.replicas, raw.max);
    if max > MAX_REPLICAS {
        return Err(invalid(
            "replicas.max",
            format!("{max} is more than {MAX_REPLICAS}"),
        ));
    }
    if min > max {
        return Err(invalid(
            "replicas.min",
            format!("{min} is more than replicas.max ({max})"),
        ));
    }
    needs_switch("replicas.max", max, strategy)?;
    if min == 0 && strategy == Strategy::Recreate {
        return Err(invalid(
            "replicas.min",
            "0 (scale to zero) needs strategy switch: the node proxy keeps the port open while no replica runs and wakes one at the next request",
        ));
    }
    let window = |field: &str, ms: u64, default: Duration| {
        let d = if ms == 0 {
            default
        } else {
            Duration::from_millis(ms)
        };
        if d > MAX_WINDOW {
            return Err(invalid(field, "is longer than a day"));
        }
        Ok(d)
    };
    let a = Autoscale {
        min,
        max,
        target_in_flight: raw.target_in_flight.max(1),
        scale_up_after: window(
            "replicas.scale_up_after",
            raw.scale_up_after_ms,
            DEFAULT_SCALE_UP_AFTER,
        )?,
        scale_down_after: window(
            "replicas.scale_down_after",
            raw.scale_down_after_ms,
            DEFAULT_SCALE_DOWN_AFTER,
        )?,
    };
    Ok((a.floor(), Some(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(replicas: u32, max: u32) -> RawAutoscale {
        RawAutoscale {
            replicas,
            max,
            target_in_flight: 0,
            scale_up_after_ms: 0,
            scale_down_after_ms: 0,
        }
    }

    fn field(e: Error) -> String {
        match e {
            Error::InvalidInput { field, .. } => field,
            e => panic!("not an input error: {e}"),
        }
    }

    #[test]
    fn a_fixed_count_or_a_range_each_refused_by_its_field() {
        assert_eq!(validate(&raw(0, 0), Strategy::Switch).unwrap(), (1, None));
        assert_eq!(validate(&raw(3, 0), Strategy::Switch).unwrap().0, 3);
        let (start, a) = validate(&raw(0, 4), Strategy::Switch).unwrap();
        let a = a.unwrap();
        assert_eq!((start, a.min, a.max, a.target_in_flight), (1, 0, 4, 1));
        assert!(a.wants_zero());
        assert_eq!(a.scale_up_after, DEFAULT_SCALE_UP_AFTER);
        assert_eq!(a.scale_down_after, DEFAULT_SCALE_DOWN_AFTER);
        assert_eq!(
            field(validate(&raw(5, 4), Strategy::Switch).unwrap_err()),
            "replicas.min"
        );
        assert_eq!(
            field(validate(&raw(1, 65), Strategy::Switch).unwrap_err()),
            "replicas.max"
        );
        assert_eq!(
            field(validate(&raw(1, 2), Strategy::Recreate).unwrap_err()),
            "replicas.max"
        );
        assert!(validate(&raw(1, 1), Strategy::Recreate).is_ok());
        assert_eq!(
            field(validate(&raw(2, 0), Strategy::Recreate).unwrap_err()),
            "replicas"
        );
        let mut long = raw(1, 2);
        long.scale_down_after_ms = 2 * 24 * 3600 * 1000;
        assert_eq!(
            field(validate(&long, Strategy::Switch).unwrap_err()),
            "replicas.scale_down_after"
        );
    }

    #[test]
    fn a_deploy_keeps_the_running_count_within_the_range() {
        let (_, a) = validate(&raw(2, 4), Strategy::Switch).unwrap();
        let a = a.unwrap();
        assert_eq!(a.start_count(0), 2);
        assert_eq!(a.start_count(3), 3);
        assert_eq!(a.start_count(9), 4);
    }
}
