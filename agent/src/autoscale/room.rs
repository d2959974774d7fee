//! The node's room for more replicas of a deployment: its memory limit × every running
//! replica on the node (within `overcommit`) and free GPUs, as a deploy's preflight counts
//! them ([`crate::capacity`]).

use crate::capacity::{check, Asked, Committed, Node};
use crate::spec::Spec;
use crate::supervisor::Supervisor;

/// How many of `wanted` more replicas of a deployment running `spec` fit on the node, and why
/// not all of them when they do not (the capacity check's words for one more).
pub(super) fn fits(sup: &Supervisor, spec: &Spec, wanted: u32) -> (u32, Option<String>) {
    let r = &spec.resources;
    if r.memory.is_none() && r.gpus == 0 {
        return (wanted, None);
    }
    // Every deployment's running replicas, this one's included: more of it come on top.
    let committed_memory: u64 = sup
        .registry()
        .all()
        .iter()
        .filter_map(|o| {
            let mem = o.current()?.spec.resources.memory.unwrap_or(0);
            Some(mem.saturating_mul(u64::from(o.running_count())))
        })
        .sum();
    let (gpus_total, gpus_held) = {
        let pool = sup.gpu_pool();
        (pool.total(), pool.total().saturating_sub(pool.free()))
    };
    let node = Node {
        memory_bytes: crate::pipeline::node_memory(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(0),
        gpus: gpus_total,
    };
    let committed = Committed {
        memory_bytes: committed_memory,
        gpus: gpus_held,
    };
    let fit = |n: u32| {
        check(
            &node,
            &committed,
            &Asked {
                memory_bytes: r.memory,
                // Each replica's quota is checked against the node's cores, not added up.
                cpus: None,
                gpus: r.gpus,
                replicas: n,
            },
            sup.config().overcommit,
        )
    };
    let mut n = wanted;
    let mut why = None;
    while n > 0 {
        match fit(n) {
            Ok(()) => break,
            Err(e) => {
                why.get_or_insert(e);
                n -= 1;
            }
        }
    }
    (n, why.map(|w| w.replace('\n', "; ")))
}
