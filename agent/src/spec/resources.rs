//! The `resources` of a deployment: limits for every process of the app (memory, CPU time,
//! processes, whole GPUs) and, separately, the build's memory. Accepted, checked and kept
//! here; enforcing them is the launcher's business.

use serde::{Deserialize, Serialize};

use super::fields::invalid;
use crate::error::Error;

/// The smallest memory limit accepted: below it not even an interpreter starts.
pub(crate) const MIN_MEMORY: u64 = 4 * 1024 * 1024;
/// The largest CPU quota accepted, in cores.
pub(crate) const MAX_CPUS: f64 = 1024.0;
/// The fewest processes and threads accepted (a shell, the app, a few threads).
pub(crate) const MIN_PIDS: u64 = 8;

/// Limits of each replica (and of the build). `None` / 0: not limited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Resources {
    /// Hard memory limit of each replica, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU time quota of each replica, in cores (finite, > 0, ≤ [`MAX_CPUS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Processes and threads each replica may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Whole GPUs per replica, assigned by the agent (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpus: u32,
    /// Memory limit of the packages step and the start script, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_memory: Option<u64>,
}

// `cpus` is checked finite when validated (and so when stored), so equality is total.
impl Eq for Resources {}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The raw request fields (0: not set).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RawResources {
    pub memory: u64,
    pub cpus: f64,
    pub pids: u32,
    pub gpus: u32,
    pub build_memory: u64,
}

impl Resources {
    /// Whether no limit is set.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every field; the error names it (`resources.cpus: ...`).
    pub(crate) fn validate(raw: &RawResources) -> Result<Resources, Error> {
        let memory = |field: &str, v: u64| {
            if v != 0 && v < MIN_MEMORY {
                Err(invalid(
                    field,
                    format!("{v} bytes is less than the least accepted, 4 MiB"),
                ))
            } else {
                Ok((v != 0).then_some(v))
            }
        };
        let cpus = raw.cpus;
        if cpus != 0.0 && !(cpus.is_finite() && cpus > 0.0 && cpus <= MAX_CPUS) {
            return Err(invalid(
                "resources.cpus",
                format!("{cpus} must be more than 0 and at most {MAX_CPUS} (cores, e.g. 0.5 or 2)"),
            ));
        }
        let pids = u64::from(raw.pids);
        if pids != 0 && pids < MIN_PIDS {
            return Err(invalid(
                "resources.pids",
                format!("{pids} is less than {MIN_PIDS} (processes and threads)"),
            ));
        }
        Ok(Resources {
            memory: memory("resources.memory", raw.memory)?,
            cpus: (cpus != 0.0).then_some(cpus),
            pids: (pids != 0).then_some(pids),
            gpus: raw.gpus,
            build_memory: memory("resources.build_memory", raw.build_memory)?,
        })
    }

    /// The raw fields again (0: not set), as the wire carries them.
    pub(crate) fn to_raw(&self) -> RawResources {
        RawResources {
            memory: self.memory.unwrap_or(0),
            cpus: self.cpus.unwrap_or(0.0),
            pids: self
                .pids
                .map(|p| u32::try_from(p).unwrap_or(u32::MAX))
                .unwrap_or(0),
            gpus: self.gpus,
            build_memory: self.build_memory.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawResources) -> Result<Resources, String> {
        Resources::validate(&raw).map_err(|e| e.to_string())
    }

    #[test]
    fn zero_is_not_set() {
        let r = check(RawResources::default()).unwrap();
        assert!(r.is_empty());
        assert_eq!(r, Resources::default());
    }

    #[test]
    fn limits_are_kept() {
        let raw = RawResources {
            memory: 4 << 30,
            cpus: 1.5,
            pids: 2048,
            gpus: 1,
            build_memory: 8 << 30,
        };
        let r = check(raw.clone()).unwrap();
        assert_eq!(r.memory, Some(4 << 30));
        assert_eq!(r.cpus, Some(1.5));
        assert_eq!(r.pids, Some(2048));
        assert_eq!(r.gpus, 1);
        assert_eq!(r.build_memory, Some(8 << 30));
        assert_eq!(r.to_raw(), raw);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), r);
        assert_eq!(serde_json::to_string(&Resources::default()).unwrap(), "{}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                RawResources {
                    cpus: -1.0,
                    ..Default::default()
                },
                "resources.cpus:",
            ),
            (
                RawResources {
                    cpus: f64::NAN,
                    ..Default::default()
                },
                "resources.cpus:",
            ),
            (
                RawResources {
                    cpus: 1024.5,
                    ..Default::default()
                },
                "resources.cpus:",
            ),
            (
                RawResources {
                    memory: 1024,
                    ..Default::default()
                },
                "resources.memory:",
            ),
            (
                RawResources {
                    pids: 7,
                    ..Default::default()
                },
                "resources.pids:",
            ),
            (
                RawResources {
                    build_memory: MIN_MEMORY - 1,
                    ..Default::default()
                },
                "resources.build_memory:",
            ),
        ];
        for (raw, field) in cases {
            let err = check(raw.clone()).unwrap_err();
            assert!(err.starts_with(field), "{raw:?}: {err}");
        }
        check(RawResources {
            memory: MIN_MEMORY,
            cpus: MAX_CPUS,
            pids: 8,
            build_memory: MIN_MEMORY,
            gpus: 0,
        })
        .unwrap();
    }
}
