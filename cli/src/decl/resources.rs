//! The `resources:` block of a deployment declaration: limits for every process of the app
//! and, separately, the build; sizes as people write them ("4G", "512M", "8GiB", "1.5G", or
//! a number of bytes), checked here and sent to the agent in bytes.

use deployctl_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use super::Scalar;
use crate::error::bad_input;

/// The smallest memory limit the agent accepts.
const MIN_MEMORY: u64 = 4 * 1024 * 1024;
/// The largest CPU quota the agent accepts, in cores.
const MAX_CPUS: f64 = 1024.0;
/// The fewest processes and threads the agent accepts.
const MIN_PIDS: u64 = 8;

/// `resources:` (every field optional: not set means not limited).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resources {
    /// Hard memory limit of each replica ("4G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Scalar>,
    /// CPU time quota of each replica, in cores (1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Processes and threads of each replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Whole GPUs per replica, assigned by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Memory limit of the packages step and the start script ("8G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_memory: Option<Scalar>,
}

impl Resources {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every field; the error names it (`resources.memory: "lots" is not a size`).
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.to_pb().map(|_| ())
    }

    /// What the agent gets (`None` when nothing is set), checked.
    pub(crate) fn to_pb(&self) -> anyhow::Result<Option<pb::Resources>> {
        if self.is_empty() {
            return Ok(None);
        }
        let memory = |field: &str, v: &Option<Scalar>| -> anyhow::Result<u64> {
            let Some(v) = v else { return Ok(0) };
            let text = v.to_string();
            let bytes = parse_size(&text).map_err(|why| {
                bad_input(format!(
                    "{field}: {text:?} is not a size ({why}); write e.g. 512M, 4G, 1.5G, 8GiB or a number of bytes"
                ))
            })?;
            if bytes < MIN_MEMORY {
                return Err(bad_input(format!(
                    "{field}: {text:?} is less than the least accepted, 4M"
                )));
            }
            Ok(bytes)
        };
        let cpus = self.cpus.unwrap_or(0.0);
        if self.cpus.is_some() && !(cpus.is_finite() && cpus > 0.0 && cpus <= MAX_CPUS) {
            return Err(bad_input(format!(
                "resources.cpus: {cpus} must be more than 0 and at most {MAX_CPUS} (cores of CPU time, e.g. 0.5 or 2)"
            )));
        }
        let pids = self.pids.unwrap_or(0);
        if self.pids.is_some() && !(MIN_PIDS..=u64::from(u32::MAX)).contains(&pids) {
            return Err(bad_input(format!(
                "resources.pids: {pids} must be at least {MIN_PIDS} (processes and threads, e.g. 512)"
            )));
        }
        Ok(Some(pb::Resources {
            memory: memory("resources.memory", &self.memory)?,
            cpus,
            pids: pids as u32,
            gpus: self.gpus.unwrap_or(0),
            build_memory: memory("resources.build_memory", &self.build_memory)?,
        }))
    }

    /// The block as a person would write it, from what an agent runs.
    pub(crate) fn from_pb(r: Option<&pb::Resources>) -> Resources {
        let Some(r) = r else {
            return Resources::default();
        };
        let size = |b: u64| (b > 0).then(|| format_size(b));
        Resources {
            memory: size(r.memory),
            cpus: (r.cpus > 0.0).then_some(r.cpus),
            pids: (r.pids > 0).then_some(u64::from(r.pids)),
            gpus: (r.gpus > 0).then_some(r.gpus),
            build_memory: size(r.build_memory),
        }
    }
}

/// Bytes from a size: a number of bytes, or a number (1.5 allowed) with a binary unit
/// K, M, G or T (also written Ki/KiB/KB..., any case: 1G = 1GiB = 1024³ bytes).
pub(crate) fn parse_size(text: &str) -> Result<u64, &'static str> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let prefix = match unit.as_str() {
        "" | "b" => "",
        u => {
            let u = u.strip_suffix('b').unwrap_or(u);
            u.strip_suffix('i').unwrap_or(u)
        }
    };
    let shift = match prefix {
        "" if unit.len() <= 1 => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err("the unit is not one of K, M, G, T"),
    };
    if number.is_empty() {
        return Err("no number");
    }
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(1 << shift).ok_or("too large");
    }
    let n: f64 = number.parse().map_err(|_| "not a number")?;
    let bytes = (n * (1u64 << shift) as f64).round();
    if shift == 0 && n.fract() != 0.0 {
        return Err("a number of bytes is whole");
    }
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err("too large");
    }
    Ok(bytes as u64)
}

/// A size as a person writes it: "4G", "512M", else the number of bytes.
pub(crate) fn format_size(bytes: u64) -> Scalar {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return Scalar::Text(format!("{}{unit}", bytes >> shift));
        }
    }
    Scalar::Int(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_people_write_them() {
        const G: u64 = 1 << 30;
        for (text, bytes) in [
            ("4G", 4 * G),
            ("4g", 4 * G),
            ("512M", 512 << 20),
            ("8GiB", 8 * G),
            ("8Gi", 8 * G),
            ("8GB", 8 * G),
            ("1.5G", 3 * G / 2),
            ("1T", 1 << 40),
            ("64K", 64 << 10),
            ("4294967296", 4 * G),
            ("1000B", 1000),
            (" 2 G ", 2 * G),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "lots",
            "G",
            "4X",
            "4 GG",
            "1.5",
            "-1G",
            "1.2.3G",
            "4iB",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn sizes_are_written_back_in_the_largest_whole_unit() {
        assert_eq!(format_size(4 << 30), Scalar::Text("4G".into()));
        assert_eq!(format_size(1536 << 20), Scalar::Text("1536M".into()));
        assert_eq!(format_size(1000), Scalar::Int(1000));
        for b in [4u64 << 30, 1536 << 20, 1000, 5 << 10] {
            assert_eq!(parse_size(&format_size(b).to_string()), Ok(b));
        }
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                Resources {
                    memory: Some(Scalar::Text("lots".into())),
                    ..Default::default()
                },
                "resources.memory: \"lots\" is not a size",
            ),
            (
                Resources {
                    build_memory: Some(Scalar::Int(1024)),
                    ..Default::default()
                },
                "resources.build_memory: \"1024\" is less than",
            ),
            (
                Resources {
                    cpus: Some(0.0),
                    ..Default::default()
                },
                "resources.cpus: 0 must be more than 0",
            ),
            (
                Resources {
                    cpus: Some(2000.0),
                    ..Default::default()
                },
                "resources.cpus:",
            ),
            (
                Resources {
                    pids: Some(4),
                    ..Default::default()
                },
                "resources.pids: 4 must be at least 8",
            ),
        ];
        for (r, want) in cases {
            let err = r.validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "{r:?}: {err}");
        }
    }

    #[test]
    fn the_block_goes_to_the_agent_and_back() {
        let r = Resources {
            memory: Some(Scalar::Text("4G".into())),
            cpus: Some(1.5),
            pids: Some(2048),
            gpus: Some(1),
            build_memory: Some(Scalar::Text("8GiB".into())),
        };
        let pb = r.to_pb().unwrap().unwrap();
        assert_eq!(pb.memory, 4 << 30);
        assert_eq!(pb.cpus, 1.5);
        assert_eq!(pb.pids, 2048);
        assert_eq!(pb.gpus, 1);
        assert_eq!(pb.build_memory, 8 << 30);
        let back = Resources::from_pb(Some(&pb));
        assert_eq!(back.memory, Some(Scalar::Text("4G".into())));
        assert_eq!(back.build_memory, Some(Scalar::Text("8G".into())));
        assert_eq!(back.to_pb().unwrap().unwrap(), pb);
        assert_eq!(Resources::default().to_pb().unwrap(), None);
        assert!(Resources::from_pb(None).is_empty());
    }
}
