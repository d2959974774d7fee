//! `warmup` and the health check's failure counts: requests sent to each instance of a new
//! release once it is ready and before traffic moves to it, and how many failed checks in a
//! row make a running instance unhealthy, then restarted.

use serde::{Deserialize, Serialize};

use super::fields::invalid;
use crate::error::Error;

/// Consecutive failed checks after which a running instance is unhealthy (default).
pub(crate) const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
/// Consecutive failed checks after which it is restarted (default).
pub(crate) const DEFAULT_RESTART_AFTER: u32 = 6;
/// The most warm-up requests a deployment may have.
const MAX_WARMUPS: usize = 32;
/// The largest warm-up body.
const MAX_BODY: usize = 1024 * 1024;
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// One warm-up request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Warmup {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// A warm-up as the request has it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawWarmup {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// Every warm-up checked: a known method (empty: GET), a path from '/', a body of at most
/// 1 MiB; the error names the entry (`warmup[1].path`).
pub(crate) fn validate(raw: &[RawWarmup]) -> Result<Vec<Warmup>, Error> {
    if raw.len() > MAX_WARMUPS {
        return Err(invalid(
            "warmup",
            format!("{} requests is more than {MAX_WARMUPS}", raw.len()),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, w)| {
            let method = match w.method.trim().to_ascii_uppercase() {
                m if m.is_empty() => "GET".to_string(),
                m if METHODS.contains(&m.as_str()) => m,
                m => {
                    return Err(invalid(
                        &format!("warmup[{i}].method"),
                        format!("{m:?} is not one of {}", METHODS.join(", ")),
                    ))
                }
            };
            let path = w.path.trim();
            if !path.starts_with('/')
                || path.len() > 2048
                || path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    &format!("warmup[{i}].path"),
                    format!("{path:?} must start with '/' and have no spaces"),
                ));
            }
            if w.body.len() > MAX_BODY {
                return Err(invalid(
                    &format!("warmup[{i}].body"),
                    "is larger than 1 MiB",
                ));
            }
            Ok(Warmup {
                method,
                path: path.to_string(),
                body: w.body.clone(),
            })
        })
        .collect()
}

/// `health.unhealthy_after` and `health.restart_after` (0: their defaults; an unset
/// `restart_after` is never below `unhealthy_after`).
pub(crate) fn failure_counts(
    unhealthy_after: u32,
    restart_after: u32,
) -> Result<(u32, u32), Error> {
    const MAX: u32 = 1000;
    let unhealthy = match unhealthy_after {
        0 => DEFAULT_UNHEALTHY_AFTER,
        n => n,
    };
    let restart = match restart_after {
        0 => DEFAULT_RESTART_AFTER.max(unhealthy),
        n => n,
    };
    if unhealthy > MAX || restart > MAX {
        return Err(invalid(
            "health.unhealthy_after",
            format!("failure counts are at most {MAX}"),
        ));
    }
    if restart < unhealthy {
        return Err(invalid(
            "health.restart_after",
            format!("{restart} must be at least health.unhealthy_after ({unhealthy}): an instance is taken out of traffic before it is restarted"),
        ));
    }
    Ok((unhealthy, restart))
}

pub(super) fn default_unhealthy_after() -> u32 {
    DEFAULT_UNHEALTHY_AFTER
}

pub(super) fn default_restart_after() -> u32 {
    DEFAULT_RESTART_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(method: &str, path: &str) -> RawWarmup {
        RawWarmup {
            method: method.into(),
            path: path.into(),
            body: String::new(),
        }
    }

    #[test]
    fn warmups_are_checked_and_named_by_entry() {
        let ok = validate(&[raw("post", "/predict"), raw("", "/")]).unwrap();
        assert_eq!(ok[0].method, "POST");
        assert_eq!(ok[1].method, "GET");
        let e = validate(&[raw("GET", "/"), raw("FETCH", "/")]).unwrap_err();
        assert!(e.to_string().contains("warmup[1].method"), "{e}");
        let e = validate(&[raw("GET", "predict")]).unwrap_err();
        assert!(e.to_string().contains("warmup[0].path"), "{e}");
    }

    #[test]
    fn failure_counts_default_and_keep_their_order() {
        assert_eq!(failure_counts(0, 0).unwrap(), (3, 6));
        assert_eq!(failure_counts(10, 0).unwrap(), (10, 10));
        assert_eq!(failure_counts(2, 4).unwrap(), (2, 4));
        let e = failure_counts(5, 2).unwrap_err();
        assert!(e.to_string().contains("health.restart_after"), "{e}");
    }
}
