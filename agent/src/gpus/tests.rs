use std::path::PathBuf;

use super::*;

fn gpu(index: u32, minor: Option<u32>) -> Gpu {
    Gpu {
        index,
        uuid: format!("GPU-{index:04}"),
        name: "NVIDIA A10".to_string(),
        memory_bytes: 24 << 30,
        minor,
    }
}

fn pool(n: u32) -> GpuPool {
    GpuPool::new(Discovery {
        gpus: (0..n).rev().map(|i| gpu(i, Some(i))).collect(),
        note: format!("{n} NVIDIA GPUs found by NVML"),
    })
}

fn uuids(gpus: &[Gpu]) -> Vec<&str> {
    gpus.iter().map(|g| g.uuid.as_str()).collect()
}

#[test]
fn assigns_lowest_index_first_and_never_one_gpu_twice() {
    let mut p = pool(4);
    assert_eq!(p.total(), 4);
    let a = p.assign("web/0", 2).unwrap();
    assert_eq!(uuids(&a), ["GPU-0000", "GPU-0001"]);
    let b = p.assign("api/0", 1).unwrap();
    assert_eq!(uuids(&b), ["GPU-0002"]);
    let c = p.assign("web/1", 1).unwrap();
    assert_eq!(uuids(&c), ["GPU-0003"]);
    assert_eq!(p.free(), 0);
    let mut all: Vec<String> = p
        .holders()
        .values()
        .flatten()
        .map(|g| g.uuid.clone())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4, "each GPU has one holder");
    assert!(p.assign("other/0", 1).is_err());
}

#[test]
fn a_holder_keeps_its_gpus_and_grows_or_shrinks_in_place() {
    let mut p = pool(4);
    p.assign("a/0", 1).unwrap();
    let web = p.assign("web/0", 1).unwrap();
    assert_eq!(uuids(&web), ["GPU-0001"]);
    // Asked again (a new release of the same replica): the same GPU.
    assert_eq!(p.assign("web/0", 1).unwrap(), web);
    // More: its own plus the lowest free.
    assert_eq!(
        uuids(&p.assign("web/0", 2).unwrap()),
        ["GPU-0001", "GPU-0002"]
    );
    // Fewer: its lowest kept, the rest freed.
    assert_eq!(uuids(&p.assign("web/0", 1).unwrap()), ["GPU-0001"]);
    assert_eq!(p.free(), 2);
    // None: all freed.
    assert!(p.assign("web/0", 0).unwrap().is_empty());
    assert_eq!(p.free(), 3);
}

#[test]
fn a_shortage_changes_nothing_and_names_no_other_deployment() {
    let mut p = pool(2);
    p.assign("secret-project/0", 1).unwrap();
    let e = p.assign("web/0", 2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "gpus: asked for 2 GPUs per replica, this node has 1 free of 2 \
         (GPU 0 NVIDIA A10 is used by another deployment)"
    );
    assert!(!e.to_string().contains("secret-project"));
    assert!(p.held("web/0").is_empty(), "all or nothing");
    assert_eq!(p.free(), 1);
}

#[test]
fn a_shortage_counts_the_holders_own_gpus_and_tells_siblings_apart() {
    let mut p = pool(3);
    p.assign("web/0", 1).unwrap();
    p.assign("x/0", 1).unwrap();
    p.assign("y/0", 1).unwrap();
    p.release("y/0");
    p.assign("web/1", 1).unwrap();
    let e = p.assign("web/1", 3).unwrap_err();
    assert_eq!((e.free, e.total), (1, 3));
    assert_eq!(
        e.to_string(),
        "gpus: asked for 3 GPUs per replica, this node has 1 free of 3 \
         (GPU 1 NVIDIA A10 is used by another deployment; \
         GPU 0 NVIDIA A10 is used by another replica of this deployment)"
    );
    assert_eq!(uuids(&p.held("web/1")), ["GPU-0002"], "unchanged");
    let mut q = pool(3);
    q.assign("a/0", 1).unwrap();
    q.assign("b/0", 2).unwrap();
    assert_eq!(
        q.assign("c/0", 1).unwrap_err().to_string(),
        "gpus: asked for 1 GPU per replica, this node has 0 free of 3 \
         (GPU 0 NVIDIA A10, GPU 1 NVIDIA A10 and GPU 2 NVIDIA A10 are used by other deployments)"
    );
}

#[test]
fn a_node_without_gpus_says_why() {
    let mut p = GpuPool::new(Discovery::none(
        "no NVIDIA driver (libnvidia-ml.so.1 not found)",
    ));
    assert_eq!((p.total(), p.free()), (0, 0));
    assert!(
        p.assign("web/0", 0).unwrap().is_empty(),
        "asking none always fits"
    );
    assert_eq!(
        p.assign("web/0", 1).unwrap_err().to_string(),
        "gpus: asked for 1 GPU, this node has none (no NVIDIA driver (libnvidia-ml.so.1 not found))"
    );
}

#[test]
fn restore_after_a_restart_keeps_the_same_gpus() {
    let mut before = pool(4);
    before.assign("a/0", 1).unwrap();
    let web = before.assign("web/0", 2).unwrap();
    let records: Vec<(String, Vec<String>)> = before
        .holders()
        .into_iter()
        .map(|(h, g)| (h, g.into_iter().map(|g| g.uuid).collect()))
        .collect();
    // Restored in another order than assigned, then asked again.
    let mut after = pool(4);
    for (h, ids) in records.iter().rev() {
        assert!(after.restore(h, ids).is_empty());
    }
    assert_eq!(after.assign("web/0", 2).unwrap(), web);
    assert_eq!(after.holders(), before.holders());
}

#[test]
fn restore_reports_a_gpu_gone_or_taken_without_panicking() {
    let mut p = pool(2);
    let problems = p.restore("web/0", &["GPU-0001".to_string(), "GPU-gone".to_string()]);
    assert_eq!(
        problems,
        ["GPU GPU-gone recorded for web/0 is no longer on this node"]
    );
    assert_eq!(uuids(&p.held("web/0")), ["GPU-0001"]);
    let problems = p.restore("api/0", &["GPU-0001".to_string()]);
    assert_eq!(
        problems,
        ["GPU GPU-0001 recorded for api/0 is already held by web/0; not restored"]
    );
    // The next assign tops the replica up to what its spec asks.
    assert_eq!(
        uuids(&p.assign("web/0", 2).unwrap()),
        ["GPU-0000", "GPU-0001"]
    );
}

#[test]
fn release_frees_a_replica_or_a_whole_deployment() {
    let mut p = pool(4);
    p.assign("web/0", 1).unwrap();
    p.assign("web/1", 1).unwrap();
    p.assign("web2/0", 1).unwrap();
    assert_eq!(p.held_by_others("web"), 1);
    assert_eq!(p.held_by_others("web2"), 2);
    p.release("web/0");
    assert_eq!(p.free(), 2);
    assert_eq!(uuids(&p.assign("api/0", 1).unwrap()), ["GPU-0000"]);
    p.release_deployment("web");
    assert!(p.held("web/1").is_empty());
    assert_eq!(
        uuids(&p.held("web2/0")),
        ["GPU-0002"],
        "a prefix is not the deployment"
    );
    assert_eq!(p.free(), 2);
    p.release("nobody/0");
    assert_eq!(p.free(), 2);
}

#[test]
fn env_lists_uuids_or_hides_every_gpu() {
    let env = env_for(&[gpu(3, Some(3)), gpu(1, Some(1))]);
    assert_eq!(
        env,
        [
            (
                "CUDA_VISIBLE_DEVICES".to_string(),
                "GPU-0001,GPU-0003".to_string()
            ),
            (
                "NVIDIA_VISIBLE_DEVICES".to_string(),
                "GPU-0001,GPU-0003".to_string()
            ),
        ]
    );
    assert_eq!(
        env_for(&[]),
        [
            ("CUDA_VISIBLE_DEVICES".to_string(), String::new()),
            ("NVIDIA_VISIBLE_DEVICES".to_string(), "void".to_string()),
        ]
    );
}

#[test]
fn hidden_devices_are_the_other_gpus_files_only() {
    let all = [
        gpu(0, Some(0)),
        gpu(1, Some(1)),
        gpu(2, None),
        gpu(3, Some(7)),
    ];
    assert_eq!(
        hidden_devices(&all, &[all[1].clone()]),
        [PathBuf::from("/dev/nvidia0"), PathBuf::from("/dev/nvidia7")],
        "GPU 2's minor is unknown: it cannot be masked"
    );
    assert!(hidden_devices(&all, &all).is_empty());
    assert_eq!(hidden_devices(&all, &[]).len(), 3);
    for shared in SHARED_DEVICES {
        assert!(!hidden_devices(&all, &[]).contains(&PathBuf::from(shared)));
    }
}

#[test]
fn holder_names_and_labels() {
    assert_eq!(holder("web", 0), "web/0");
    assert_eq!(gpu(2, None).label(), "GPU 2 NVIDIA A10");
}

#[test]
fn discovery_without_a_driver_finds_none() {
    // This test machine has no NVIDIA driver; on one that has, it finds its GPUs (see them
    // with `-- --nocapture`).
    let found = discover();
    eprintln!("{found:#?}");
    if found.gpus.is_empty() {
        assert!(!found.note.is_empty());
    } else {
        assert!(found.gpus.iter().all(|g| g.uuid.starts_with("GPU-")));
    }
}
