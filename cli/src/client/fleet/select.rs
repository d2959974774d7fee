//! A fleet env's selector (`zone=a,gpus>=1,memory>=8G`) and its `--count N` placement: which
//! registered agents match, and which N have the most room for a deployment — each with the
//! reason, for `plan`.

use deployctl_proto::registry::Record;

use crate::decl::parse_size;

/// The capacities a selector may compare (anything else is a label).
pub(crate) const CAPACITIES: &[&str] = &[
    "cpus",
    "memory",
    "memory_free",
    "memory_total",
    "gpus",
    "gpus_total",
    "deployments",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    key: String,
    op: Op,
    value: String,
}

/// `k=v,k!=v,cap>=n,...`: every term must hold. Empty: every agent.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Selector(Vec<Term>);

impl Selector {
    pub(crate) fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, op, value) = split_term(part)?;
            let capacity = CAPACITIES.contains(&key.as_str());
            if capacity {
                number(&key, &value)?;
            } else if !matches!(op, Op::Eq | Op::Ne) {
                return Err(format!(
                    "{part:?}: {key} is a label, compared with = or != only (capacities: {})",
                    CAPACITIES.join(", ")
                ));
            }
            terms.push(Term { key, op, value });
        }
        Ok(Selector(terms))
    }

    /// Whether agent `r` matches; when not, the first term that fails, as written.
    pub(crate) fn check(&self, r: &Record) -> Result<(), String> {
        for t in &self.0 {
            let ok = if CAPACITIES.contains(&t.key.as_str()) {
                let have = capacity(r, &t.key);
                let want = number(&t.key, &t.value).unwrap_or(0.0);
                match t.op {
                    Op::Eq => have == want,
                    Op::Ne => have != want,
                    Op::Ge => have >= want,
                    Op::Le => have <= want,
                    Op::Gt => have > want,
                    Op::Lt => have < want,
                }
            } else {
                let label = r.labels.get(&t.key);
                match t.op {
                    Op::Ne => label != Some(&t.value),
                    _ => label == Some(&t.value),
                }
            };
            if !ok {
                return Err(format!("{} (has {})", t.written(), have_text(r, &t.key)));
            }
        }
        Ok(())
    }
}

impl Term {
    fn written(&self) -> String {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
        };
        format!("{}{op}{}", self.key, self.value)
    }
}

fn split_term(part: &str) -> Result<(String, Op, String), String> {
    for (text, op) in [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("!=", Op::Ne),
        ("==", Op::Eq),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
    ] {
        if let Some((k, v)) = part.split_once(text) {
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() {
                break;
            }
            return Ok((k.to_string(), op, v.to_string()));
        }
    }
    Err(format!(
        "{part:?} is not a term (LABEL=VALUE, LABEL!=VALUE or CAPACITY>=N, e.g. zone=a, gpus>=1, memory>=8G)"
    ))
}

/// A capacity's value as written: memory as a size (8G), the others as numbers.
fn number(key: &str, value: &str) -> Result<f64, String> {
    if key.starts_with("memory") {
        return parse_size(value)
            .map(|b| b as f64)
            .map_err(|why| format!("{key}: {value:?} is not a size ({why}), e.g. 8G"));
    }
    value
        .parse::<f64>()
        .map_err(|_| format!("{key}: {value:?} is not a number"))
}

/// `memory`: what memory limits may still add up to; `gpus`: GPUs free.
fn capacity(r: &Record, key: &str) -> f64 {
    match key {
        "cpus" => f64::from(r.cpus),
        "memory" => r.memory_room_bytes() as f64,
        "memory_free" => r.memory_free_bytes as f64,
        "memory_total" => r.memory_total_bytes as f64,
        "gpus" => f64::from(r.gpus_free),
        "gpus_total" => f64::from(r.gpus_total),
        "deployments" => f64::from(r.deployments),
        _ => 0.0,
    }
}

fn have_text(r: &Record, key: &str) -> String {
    if key.starts_with("memory") {
        return gib(capacity(r, key) as u64);
    }
    if CAPACITIES.contains(&key) {
        return capacity(r, key).to_string();
    }
    match r.labels.get(key) {
        Some(v) => format!("{key}={v}"),
        None => format!("no label {key}"),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1}G", bytes as f64 / (1u64 << 30) as f64)
}

/// What a deployment asks of a node: memory limits (bytes) and GPUs, all replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Need {
    pub memory: u64,
    pub gpus: u32,
}

/// One matching agent and whether `--count` picks it, with why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    pub address: String,
    pub picked: bool,
    pub why: String,
}

/// The `count` agents of `agents` (matching, live) with the most room for `need`: first
/// those in `running` (the deployment stays where it is while they are alive and match),
/// then those where it fits, the most memory room left first (GPUs free first when it
/// asks for GPUs). Every agent comes back, picked or not, with the reason.
pub(crate) fn place(
    agents: &[Record],
    count: usize,
    need: Need,
    running: &[String],
) -> Vec<Choice> {
    let room = |r: &Record| {
        format!(
            "{} memory room, {} of {} GPUs free, {} deployments",
            gib(r.memory_room_bytes()),
            r.gpus_free,
            r.gpus_total,
            r.deployments
        )
    };
    let (mut kept, mut others): (Vec<&Record>, Vec<&Record>) =
        agents.iter().partition(|r| running.contains(&r.address));
    kept.sort_by(|a, b| a.address.cmp(&b.address));
    others.sort_by(|a, b| {
        let key = |r: &Record| {
            let mem = r.memory_room_bytes();
            if need.gpus > 0 {
                (r.gpus_free, mem)
            } else {
                (0, mem)
            }
        };
        key(b)
            .cmp(&key(a))
            .then(a.deployments.cmp(&b.deployments))
            .then(a.address.cmp(&b.address))
    });
    let mut out = Vec::new();
    let mut picked = 0;
    for r in kept {
        let pick = picked < count;
        picked += usize::from(pick);
        let why = if pick {
            "runs it already (kept while alive and matching)".to_string()
        } else {
            format!("runs it, but {count} agents are enough")
        };
        out.push(Choice {
            address: r.address.clone(),
            picked: pick,
            why,
        });
    }
    let kept_picked = picked;
    for r in others {
        let fits_memory = need.memory == 0 || r.memory_room_bytes() >= need.memory;
        let fits_gpus = r.gpus_free >= need.gpus;
        let (pick, why) = if !fits_memory {
            (
                false,
                format!(
                    "no room: {} memory room < {} asked",
                    gib(r.memory_room_bytes()),
                    gib(need.memory)
                ),
            )
        } else if !fits_gpus {
            (
                false,
                format!("no room: {} GPUs free < {} asked", r.gpus_free, need.gpus),
            )
        } else if picked < count {
            (true, format!("most room: {}", room(r)))
        } else if kept_picked == count {
            (
                false,
                format!("not needed: it runs on {count} already ({})", room(r)),
            )
        } else {
            (false, format!("less room: {}", room(r)))
        };
        picked += usize::from(pick);
        out.push(Choice {
            address: r.address.clone(),
            picked: pick,
            why,
        });
    }
    out
}

#[cfg(test)]
mod tests;
