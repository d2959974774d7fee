//! Whether a deploy's resource limits fit on this node, next to what the other deployments
//! were promised, checked before anything is built so an impossible deploy is refused in
//! a sentence instead of failing later as out-of-memory kills or instances that never start.
//!
//! Memory and GPUs are promises: memory limits may add up to `overcommit` × the node's
//! memory (the agent's config, 1.0 by default: nothing promised twice), GPUs are whole and
//! never shared. CPU is not: a `cpus` limit is a quota of CPU time, the kernel shares CPU
//! fairly between quotas, and quotas adding up to more than the node's CPUs only means
//! each gets less when all are busy. So only a single replica asking more CPUs than the
//! node has (which it could never use) is refused.

/// The node's resources. A total of 0 means unknown (the node could not be read): that
/// resource is then not checked, rather than every deploy refused.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub memory_bytes: u64,
    pub cpus: u32,
    pub gpus: u32,
}

/// What the other deployments on the node were promised: the sums of their limits ×
/// replicas. When a deploy replaces a running release of the same deployment, the caller
/// leaves that deployment out of these sums: its current reservation is what the new
/// release takes over, and must not be counted twice.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Committed {
    pub memory_bytes: u64,
    /// GPUs held or promised (e.g. [`crate::gpus::GpuPool::held_by_others`]).
    pub gpus: u32,
}

/// What a deploy asks, per replica (`None`: no limit), and how many replicas.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Asked {
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub gpus: u32,
    pub replicas: u32,
}

/// `Ok` when the deploy fits; else every reason it does not, one sentence per field,
/// joined by newlines, each naming the field, what was asked and what is left.
pub(crate) fn check(
    node: &Node,
    committed: &Committed,
    asked: &Asked,
    overcommit: f64,
) -> Result<(), String> {
    if !(overcommit.is_finite() && overcommit > 0.0) {
        return Err(format!(
            "agent config: overcommit {overcommit} is not a positive number"
        ));
    }
    let refusals: Vec<String> = [
        memory(node, committed, asked, overcommit),
        cpus(node, asked),
        gpus(node, committed, asked),
    ]
    .into_iter()
    .flatten()
    .collect();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals.join("\n"))
    }
}

fn memory(node: &Node, committed: &Committed, asked: &Asked, overcommit: f64) -> Option<String> {
    let per_replica = asked.memory_bytes?;
    if node.memory_bytes == 0 || asked.replicas == 0 {
        return None;
    }
    let need = per_replica.saturating_mul(u64::from(asked.replicas));
    let budget = (node.memory_bytes as f64 * overcommit) as u64;
    let left = budget.saturating_sub(committed.memory_bytes);
    if need <= left {
        return None;
    }
    let what = if asked.replicas == 1 {
        bytes(need)
    } else {
        format!(
            "{} replicas × {} = {}",
            asked.replicas,
            bytes(per_replica),
            bytes(need)
        )
    };
    let factor = ratio(overcommit);
    let has = if overcommit == 1.0 {
        format!("this node has {}", bytes(node.memory_bytes))
    } else {
        format!(
            "this node has {} ({} with overcommit {factor})",
            bytes(node.memory_bytes),
            bytes(budget)
        )
    };
    Some(format!(
        "resources.memory: {what} does not fit: {has}, {} of it already promised to other \
         deployments (overcommit {factor}); {} left",
        bytes(committed.memory_bytes),
        bytes(left)
    ))
}

fn cpus(node: &Node, asked: &Asked) -> Option<String> {
    let cpus = asked.cpus?;
    if node.cpus == 0 || cpus <= f64::from(node.cpus) {
        return None;
    }
    Some(format!(
        "resources.cpus: {cpus} is more than this node's {} CPU{}",
        node.cpus,
        plural(u64::from(node.cpus))
    ))
}

fn gpus(node: &Node, committed: &Committed, asked: &Asked) -> Option<String> {
    if asked.gpus == 0 || asked.replicas == 0 {
        return None;
    }
    let per = format!("{} GPU{}", asked.gpus, plural(u64::from(asked.gpus)));
    if node.gpus == 0 {
        return Some(format!(
            "resources.gpus: asked for {per} per replica, this node has none"
        ));
    }
    let need = u64::from(asked.gpus) * u64::from(asked.replicas);
    let free = node.gpus.saturating_sub(committed.gpus);
    if need <= u64::from(free) {
        return None;
    }
    let what = if asked.replicas == 1 {
        per
    } else {
        format!("{} replicas × {per} = {need} GPUs", asked.replicas)
    };
    Some(format!(
        "resources.gpus: {what} does not fit: this node has {free} free of {}",
        node.gpus
    ))
}

/// The overcommit factor as the config would write it: "1.0", "1.5", "1.25".
fn ratio(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Bytes for people: "512 MiB", "1.5 GiB", "24 GiB" (binary units, as memory is sold).
pub(crate) fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        // One decimal, without a trailing ".0" (1.04 GiB is "1 GiB").
        let text = format!("{value:.1}");
        format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn node() -> Node {
        Node {
            memory_bytes: 24 * GIB,
            cpus: 2,
            gpus: 2,
        }
    }

    fn asked(memory: Option<u64>, cpus: Option<f64>, gpus: u32, replicas: u32) -> Asked {
        Asked {
            memory_bytes: memory,
            cpus,
            gpus,
            replicas,
        }
    }

    fn committed(memory: u64, gpus: u32) -> Committed {
        Committed {
            memory_bytes: memory,
            gpus,
        }
    }

    #[test]
    fn memory_that_fits_and_memory_that_does_not() {
        let others = committed(20 * GIB, 0);
        assert_eq!(
            check(&node(), &others, &asked(Some(4 * GIB), None, 0, 1), 1.0),
            Ok(())
        );
        assert_eq!(
            check(&node(), &others, &asked(Some(8 * GIB), None, 0, 4), 1.0).unwrap_err(),
            "resources.memory: 4 replicas × 8 GiB = 32 GiB does not fit: this node has \
             24 GiB, 20 GiB of it already promised to other deployments (overcommit 1.0); \
             4 GiB left"
        );
        assert_eq!(
            check(&node(), &others, &asked(Some(5 * GIB), None, 0, 1), 1.0).unwrap_err(),
            "resources.memory: 5 GiB does not fit: this node has 24 GiB, 20 GiB of it \
             already promised to other deployments (overcommit 1.0); 4 GiB left"
        );
    }

    #[test]
    fn overcommit_stretches_memory_only() {
        let others = committed(20 * GIB, 0);
        let ask = asked(Some(8 * GIB), None, 0, 2);
        assert!(check(&node(), &others, &ask, 1.0).is_err());
        assert!(check(&node(), &others, &ask, 1.25)
            .unwrap_err()
            .contains("(30 GiB with overcommit 1.25)"));
        assert_eq!(check(&node(), &others, &ask, 1.5), Ok(()));
        assert_eq!(
            check(&node(), &others, &asked(Some(8 * GIB), None, 0, 4), 1.5).unwrap_err(),
            "resources.memory: 4 replicas × 8 GiB = 32 GiB does not fit: this node has \
             24 GiB (36 GiB with overcommit 1.5), 20 GiB of it already promised to other \
             deployments (overcommit 1.5); 16 GiB left"
        );
        // Already over-promised (e.g. overcommit lowered since): nothing left, no panic.
        let err = check(
            &node(),
            &committed(30 * GIB, 0),
            &asked(Some(GIB), None, 0, 1),
            1.0,
        )
        .unwrap_err();
        assert!(err.ends_with("; 0 B left"), "{err}");
        assert!(check(&node(), &others, &ask, 0.0)
            .unwrap_err()
            .contains("overcommit 0 is not a positive number"));
        assert!(check(&node(), &others, &ask, f64::NAN).is_err());
    }

    #[test]
    fn cpus_are_refused_per_replica_only() {
        let none = Committed::default();
        assert_eq!(
            check(&node(), &none, &asked(None, Some(3.0), 0, 1), 1.0).unwrap_err(),
            "resources.cpus: 3 is more than this node's 2 CPUs"
        );
        let one = Node { cpus: 1, ..node() };
        assert_eq!(
            check(&one, &none, &asked(None, Some(1.5), 0, 1), 1.0).unwrap_err(),
            "resources.cpus: 1.5 is more than this node's 1 CPU"
        );
        // 10 replicas × 2 CPUs on a 2-CPU node: shared fairly, not refused.
        assert_eq!(
            check(&node(), &none, &asked(None, Some(2.0), 0, 10), 1.0),
            Ok(())
        );
    }

    #[test]
    fn gpus_are_whole_and_counted_across_replicas() {
        assert_eq!(
            check(&node(), &committed(0, 0), &asked(None, None, 1, 2), 1.0),
            Ok(())
        );
        assert_eq!(
            check(&node(), &committed(0, 1), &asked(None, None, 1, 2), 1.0).unwrap_err(),
            "resources.gpus: 2 replicas × 1 GPU = 2 GPUs does not fit: this node has 1 free of 2"
        );
        assert_eq!(
            check(&node(), &committed(0, 0), &asked(None, None, 3, 1), 1.0).unwrap_err(),
            "resources.gpus: 3 GPUs does not fit: this node has 2 free of 2"
        );
        let bare = Node { gpus: 0, ..node() };
        assert_eq!(
            check(&bare, &committed(0, 0), &asked(None, None, 1, 1), 1.0).unwrap_err(),
            "resources.gpus: asked for 1 GPU per replica, this node has none"
        );
        assert_eq!(
            check(&bare, &committed(0, 0), &asked(None, None, 0, 3), 1.0),
            Ok(())
        );
    }

    #[test]
    fn every_refusal_is_given_at_once_and_unknowns_are_not_checked() {
        let err = check(
            &node(),
            &committed(24 * GIB, 2),
            &asked(Some(GIB), Some(4.0), 1, 1),
            1.0,
        )
        .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(lines[0].starts_with("resources.memory:"));
        assert!(lines[1].starts_with("resources.cpus:"));
        assert!(lines[2].starts_with("resources.gpus:"));
        let unknown = Node {
            memory_bytes: 0,
            cpus: 0,
            gpus: 2,
        };
        let ask = asked(Some(1 << 50), Some(64.0), 0, 3);
        assert_eq!(check(&unknown, &Committed::default(), &ask, 1.0), Ok(()));
        assert_eq!(
            check(
                &node(),
                &Committed::default(),
                &asked(Some(1 << 50), None, 0, 0),
                1.0
            ),
            Ok(())
        );
    }

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1000), "1000 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(24 * GIB), "24 GiB");
        assert_eq!(bytes(3 * GIB / 2), "1.5 GiB");
        assert_eq!(bytes(GIB + GIB / 100), "1 GiB");
        assert_eq!(bytes(5 << 40), "5 TiB");
        assert_eq!(bytes(u64::MAX), "16777216 TiB");
    }
}
