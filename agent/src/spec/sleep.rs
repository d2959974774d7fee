//! The spec fields `idle_timeout` and `wake_timeout`: a deployment that gets no request
//! through the node proxy for `idle_timeout` is stopped and sleeps; the next request wakes
//! it, held up to `wake_timeout`.

use std::time::Duration;

use super::fields::invalid;
use super::{RawSpec, Strategy};
use crate::error::Error;

/// How long a request to a sleeping deployment waits for it to wake.
pub(crate) const DEFAULT_WAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest idle timeout (the agent looks at the proxy's counts every second).
const MIN_IDLE: Duration = Duration::from_secs(1);

pub(super) fn default_wake() -> Duration {
    DEFAULT_WAKE_TIMEOUT
}

/// `idle_timeout` (`None`: never sleeps) and `wake_timeout`, checked with the strategy
/// they need (the node proxy keeps the port open while the app sleeps).
pub(super) fn validate(
    raw: &RawSpec,
    strategy: Strategy,
) -> Result<(Option<Duration>, Duration), Error> {
    let idle = (raw.idle_timeout_ms > 0).then(|| Duration::from_millis(raw.idle_timeout_ms));
    if let Some(idle) = idle {
        if idle < MIN_IDLE {
            return Err(invalid(
                "idle_timeout",
                format!("{idle:?} is shorter than 1s"),
            ));
        }
        if strategy == Strategy::Recreate {
            return Err(invalid(
                "idle_timeout",
                "needs strategy switch: the node proxy keeps the port open while the app sleeps and wakes it at the next request; with strategy recreate the app binds the port itself",
            ));
        }
    }
    let wake = match raw.wake_timeout_ms {
        0 => DEFAULT_WAKE_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    Ok((idle, wake))
}

/// `Option<Duration>` as milliseconds in records (absent: `None`).
pub(super) mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
