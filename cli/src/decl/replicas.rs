//! `replicas:` in a declaration: a number (a fixed count) or a range that follows the load,
//! `{min: 1, max: 4, target_in_flight: 2}` with optional windows; `--replicas 3` and
//! `--replicas 1..4 --target-in-flight 2` on the command line.

use std::fmt;

use deployctl_proto::v1 as pb;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::parse_duration;
use crate::error::bad_input;

/// The most replicas a deployment may have on one node (the agent's limit too).
pub(crate) const MAX_REPLICAS: u32 = 64;

/// How many processes of the release run on each node behind the node proxy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Replicas {
    Fixed(u32),
    Auto(Autoscale),
}

/// Replicas that follow the load: the agent adds replicas while the requests in flight
/// per ready replica stay above `target_in_flight` for `scale_up_after` (default 10s), and
/// removes one (drained) once one less would still be under it for `scale_down_after`
/// (default 60s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Autoscale {
    /// The fewest (default 1; 0 is scale to zero: it sleeps when idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// The most (required, at most 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Requests in flight per ready replica aimed at (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_after: Option<String>,
}

impl Replicas {
    /// `--replicas`: "3" (a fixed count) or "1..4" (a range that follows the load).
    pub(crate) fn parse_flag(v: &str) -> anyhow::Result<Replicas> {
        let number = |s: &str, what: &str| {
            s.trim().parse::<u32>().map_err(|_| {
                bad_input(format!(
                    "--replicas: {v:?} is not a number or a range MIN..MAX ({what} {s:?})"
                ))
            })
        };
        match v.split_once("..") {
            None => Ok(Replicas::Fixed(number(v, "count")?)),
            Some((min, max)) => Ok(Replicas::Auto(Autoscale {
                min: Some(number(min, "min")?),
                max: Some(number(max, "max")?),
                ..Default::default()
            })),
        }
    }

    /// The most that may run (a fixed count's count).
    pub(crate) fn most(&self) -> u32 {
        match self {
            Replicas::Fixed(n) => *n,
            Replicas::Auto(a) => a.max.unwrap_or(1),
        }
    }

    /// Each refusal names its field; `recreate`: the strategy is recreate.
    pub(crate) fn validate(&self, recreate: bool) -> anyhow::Result<()> {
        let switch_needed = |field: &str, n: u32| {
            bad_input(format!(
                "{field}: {n} replicas need strategy switch (the node proxy balances them); with strategy recreate the app binds the port itself"
            ))
        };
        let a = match self {
            Replicas::Fixed(n) => {
                if !(1..=MAX_REPLICAS).contains(n) {
                    return Err(bad_input(format!(
                        "replicas: {n} must be between 1 and {MAX_REPLICAS}"
                    )));
                }
                if *n > 1 && recreate {
                    return Err(switch_needed("replicas", *n));
                }
                return Ok(());
            }
            Replicas::Auto(a) => a,
        };
        let max = a.max.ok_or_else(|| {
            bad_input("replicas.max: is required with replicas that follow the load ({min: 1, max: 4, target_in_flight: 2})")
        })?;
        if !(1..=MAX_REPLICAS).contains(&max) {
            return Err(bad_input(format!(
                "replicas.max: {max} must be between 1 and {MAX_REPLICAS}"
            )));
        }
        let min = a.min.unwrap_or(1);
        if min > max {
            return Err(bad_input(format!(
                "replicas.min: {min} is more than replicas.max ({max})"
            )));
        }
        if a.target_in_flight == Some(0) {
            return Err(bad_input(
                "replicas.target_in_flight: must be at least 1 (requests in flight per replica)",
            ));
        }
        if max > 1 && recreate {
            return Err(switch_needed("replicas.max", max));
        }
        if min == 0 && recreate {
            return Err(bad_input(
                "replicas.min: 0 (scale to zero) needs strategy switch (the node proxy keeps the port open while no replica runs and wakes one at the next request)",
            ));
        }
        for (field, v) in [
            ("replicas.scale_up_after", &a.scale_up_after),
            ("replicas.scale_down_after", &a.scale_down_after),
        ] {
            if let Some(v) = v {
                if parse_duration(field, v)?.is_zero() {
                    return Err(bad_input(format!("{field}: {v:?} must be longer than 0")));
                }
            }
        }
        Ok(())
    }

    /// Into the agent's spec: `replicas` (the count, or the min) and the range's fields.
    pub(crate) fn to_pb(&self, s: &mut pb::DeploymentSpec) -> anyhow::Result<()> {
        match self {
            Replicas::Fixed(n) => s.replicas = *n,
            Replicas::Auto(a) => {
                let ms = |field: &str, v: &Option<String>| -> anyhow::Result<u64> {
                    Ok(match v {
                        Some(v) => parse_duration(field, v)?.as_millis() as u64,
                        None => 0,
                    })
                };
                s.replicas = a.min.unwrap_or(1);
                s.replicas_max = a.max.unwrap_or(1).max(1);
                s.target_in_flight = a.target_in_flight.unwrap_or(1);
                s.scale_up_after_ms = ms("replicas.scale_up_after", &a.scale_up_after)?;
                s.scale_down_after_ms = ms("replicas.scale_down_after", &a.scale_down_after)?;
            }
        }
        Ok(())
    }

    /// From what an agent runs, as a person would write it (defaults left out; one
    /// replica, the default, is no `replicas:` at all).
    pub(crate) fn from_pb(s: &pb::DeploymentSpec) -> Option<Replicas> {
        if s.replicas_max == 0 {
            return Some(s.replicas).filter(|n| *n > 1).map(Replicas::Fixed);
        }
        let dur = |ms: u64, default: &str| {
            let d = if ms.is_multiple_of(1000) {
                format!("{}s", ms / 1000)
            } else {
                format!("{ms}ms")
            };
            (ms > 0 && d != default).then_some(d)
        };
        Some(Replicas::Auto(Autoscale {
            min: Some(s.replicas),
            max: Some(s.replicas_max),
            target_in_flight: Some(s.target_in_flight.max(1)),
            scale_up_after: dur(s.scale_up_after_ms, "10s"),
            scale_down_after: dur(s.scale_down_after_ms, "60s"),
        }))
    }
}

impl Serialize for Replicas {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Replicas::Fixed(n) => s.serialize_u32(*n),
            Replicas::Auto(a) => a.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReplicasVisitor)
    }
}

struct ReplicasVisitor;

impl<'de> Visitor<'de> for ReplicasVisitor {
    type Value = Replicas;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a number of replicas, or {min, max, target_in_flight} (replicas that follow the load)",
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Replicas, E> {
        u32::try_from(v).map(Replicas::Fixed).map_err(|_| {
            E::custom(format!(
                "replicas: {v} must be between 1 and {MAX_REPLICAS}"
            ))
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Replicas, E> {
        u64::try_from(v)
            .map_err(|_| {
                E::custom(format!(
                    "replicas: {v} must be between 1 and {MAX_REPLICAS}"
                ))
            })
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Replicas, A::Error> {
        Autoscale::deserialize(de::value::MapAccessDeserializer::new(map)).map(Replicas::Auto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decl::DeploymentDecl;

    fn parse(yaml: &str) -> anyhow::Result<DeploymentDecl> {
        let d: DeploymentDecl = serde_norway::from_str(&format!("repo: r\ncommand: c\n{yaml}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        d.validate("app")?;
        Ok(d)
    }

    fn err(yaml: &str) -> String {
        format!("{:#}", parse(yaml).unwrap_err())
    }

    #[test]
    fn a_number_is_a_fixed_count_and_a_map_follows_the_load() {
        let d = parse("replicas: 3\n").unwrap();
        assert_eq!(d.replicas, Some(Replicas::Fixed(3)));
        let s = d.to_spec("app", std::path::Path::new("/")).unwrap();
        assert_eq!((s.replicas, s.replicas_max), (3, 0));
        let d =
            parse("replicas: {min: 1, max: 4, target_in_flight: 2, scale_up_after: 5s}\n").unwrap();
        let s = d.to_spec("app", std::path::Path::new("/")).unwrap();
        assert_eq!((s.replicas, s.replicas_max, s.target_in_flight), (1, 4, 2));
        assert_eq!((s.scale_up_after_ms, s.scale_down_after_ms), (5000, 0));
        // Back from what the agent runs, as written; and as YAML again.
        let back = Replicas::from_pb(&s).unwrap();
        assert_eq!(back, d.replicas.clone().unwrap());
        let text = serde_norway::to_string(&d).unwrap();
        assert!(text.contains("replicas:\n  min: 1\n  max: 4\n"), "{text}");
        let fixed = serde_norway::to_string(&parse("replicas: 2\n").unwrap()).unwrap();
        assert!(fixed.contains("replicas: 2\n"), "{fixed}");
        // min 0 (scale to zero) is accepted and kept.
        let s = parse("replicas: {min: 0, max: 2}\n")
            .unwrap()
            .to_spec("app", std::path::Path::new("/"))
            .unwrap();
        assert_eq!((s.replicas, s.replicas_max, s.target_in_flight), (0, 2, 1));
        assert_eq!(
            Replicas::from_pb(&s),
            Some(Replicas::Auto(Autoscale {
                min: Some(0),
                max: Some(2),
                target_in_flight: Some(1),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("replicas: {min: 5, max: 4}\n")
            .starts_with("replicas.min: 5 is more than replicas.max (4)"));
        assert!(err("replicas: {min: 1, max: 65}\n").starts_with("replicas.max: 65"));
        assert!(err("replicas: {min: 1}\n").starts_with("replicas.max: is required"));
        assert!(err("replicas: {max: 2, target_in_flight: 0}\n")
            .starts_with("replicas.target_in_flight"));
        assert!(err("replicas: {max: 2, scale_down_after: soon}\n")
            .starts_with("replicas.scale_down_after"));
        assert!(err("replicas: {max: 2}\nstrategy: recreate\n")
            .starts_with("replicas.max: 2 replicas need strategy switch"));
        assert!(err("replicas: 0\n").starts_with("replicas: 0 must be between 1 and 64"));
        assert!(err("replicas: -1\n").contains("replicas: -1 must be between"));
        assert!(err("replicas: {max: 2, targt: 1}\n").contains("targt"));
        assert!(err("replicas: many\n")
            .contains("a number of replicas, or {min, max, target_in_flight}"));
    }

    #[test]
    fn the_flag_takes_a_count_or_a_range() {
        assert_eq!(Replicas::parse_flag("3").unwrap(), Replicas::Fixed(3));
        assert_eq!(
            Replicas::parse_flag("1..4").unwrap(),
            Replicas::Auto(Autoscale {
                min: Some(1),
                max: Some(4),
                ..Default::default()
            })
        );
        let e = Replicas::parse_flag("1..x").unwrap_err().to_string();
        assert!(
            e.starts_with("--replicas: \"1..x\" is not a number or a range"),
            "{e}"
        );
    }
}
