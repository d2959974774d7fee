use super::*;
use crate::spec::{RawSpec, Spec, DEFAULT_KILL_TIMEOUT};

pub(crate) fn release(number: u32, owner: &str) -> ReleaseRecord {
    let spec = Spec::validate(RawSpec {
        name: "app".into(),
        repo: "https://example.org/app.git".into(),
        command: "python3 app.py".into(),
        owner: owner.into(),
        ..Default::default()
    })
    .unwrap();
    ReleaseRecord {
        number,
        spec,
        git_ref: "main".into(),
        commit: "0123456789abcdef".into(),
        packages_hash: String::new(),
        venv_dir: None,
        deployed_at: 0,
        result: store::ReleaseResult::Pending,
        switched_at: None,
        previous_drained_ms: None,
    }
}

fn id(pid: u32) -> ProcId {
    ProcId { pid, start_time: 7 }
}

#[tokio::test]
async fn a_first_deploy_holds_the_name_for_its_owner_until_it_ends() {
    let d = Deployment::new(Record::new("app"));
    assert_eq!(d.owner(), None);
    let _op = d.begin().await.unwrap();
    assert_eq!(d.begin_deploy("user:alice"), 1);
    assert_eq!(d.owner().as_deref(), Some("user:alice"));
    assert_eq!(d.snapshot().deploying, Some(1));
    d.end_deploy();
    assert_eq!(d.owner(), None);
    assert_eq!(d.snapshot().deploying, None);
}

#[test]
fn a_committed_release_is_current_ok_and_names_its_process() {
    let d = Deployment::new(Record::new("app"));
    assert_eq!(d.begin_deploy("user:alice"), 1);
    d.commit(
        release(1, "user:alice"),
        Some(id(42)),
        Tracking::default(),
        None,
        vec![],
    );
    let current = d.current().unwrap();
    assert_eq!(current.number, 1);
    assert!(current.result.is_ok());
    assert_eq!(d.recorded_process().map(|p| (p.0, p.1)), Some((id(42), 1)));
    assert_eq!(d.begin_deploy("user:alice"), 2);
    assert_eq!(d.owner().as_deref(), Some("user:alice"));
}

#[tokio::test]
async fn a_failed_first_release_leaves_no_history_a_later_one_does() {
    let d = Deployment::new(Record::new("app"));
    d.record_failure(release(1, "user:alice"));
    assert!(!d.has_releases());
    assert!(d.discard_if_unreleased());
    assert!(
        d.begin().await.is_none(),
        "a deploy that waited starts over"
    );

    let d = Deployment::new(Record::new("app"));
    d.commit(
        release(1, "user:alice"),
        Some(id(42)),
        Tracking::default(),
        None,
        vec![],
    );
    d.record_failure(release(2, "user:alice"));
    assert_eq!(d.record().releases.len(), 2);
    assert_eq!(d.current().unwrap().number, 1, "the failure is not current");
    assert!(
        !d.discard_if_unreleased(),
        "a deployment with a release stays"
    );
}

#[test]
fn a_new_process_of_the_current_release_is_recorded_one_in_flight_is_journaled() {
    let d = Deployment::new(Record::new("app"));
    d.commit(
        release(1, "user:alice"),
        Some(id(42)),
        Tracking::default(),
        Some(41000),
        vec![],
    );
    let t = Tracking::default();
    // A release being deployed, and a restart of the current one beside it (another
    // private port): in flight, journaled, not the record's process.
    assert!(d.process_started(2, 0, Some(41001), id(50), &t));
    assert!(d.process_started(1, 0, Some(41002), id(51), &t));
    assert!(
        !d.process_started(1, 0, Some(41002), id(51), &t),
        "the same"
    );
    // Its restart by the policy replaces it.
    assert!(d.process_started(1, 0, Some(41002), id(52), &t));
    let starting: Vec<u32> = d.journal().starting.iter().map(|p| p.pid).collect();
    assert_eq!(starting, [50, 52]);
    assert_eq!(d.recorded_process().map(|p| p.0), Some(id(42)));
    assert!(
        !d.process_started(1, 0, Some(41000), id(42), &t),
        "the same process"
    );
    assert!(
        d.process_started(1, 0, Some(41000), id(43), &t),
        "a restart"
    );
    assert_eq!(d.recorded_process().map(|p| p.0), Some(id(43)));
}

#[test]
fn removal_takes_the_recorded_process_when_no_instance_runs() {
    let d = Deployment::new(Record::new("app"));
    d.commit(
        release(1, "user:alice"),
        Some(id(42)),
        Tracking::default(),
        None,
        vec![],
    );
    match d.stop_for_removal().as_slice() {
        [ToStop::Recorded { id: got, grace, .. }] => {
            assert_eq!(*got, id(42));
            assert_eq!(*grace, DEFAULT_KILL_TIMEOUT);
        }
        _ => panic!("expected the recorded process"),
    }
    assert!(d.recorded_process().is_none());
    assert!(matches!(d.stop_for_removal().as_slice(), [ToStop::Nothing]));
}

#[tokio::test]
async fn a_removed_deployment_is_neither_begun_nor_written() {
    let dir = std::env::temp_dir().join(format!("deployment-test-{}", std::process::id()));
    let layout = Layout::new(dir.clone());
    let d = Deployment::new(Record::new("app"));
    d.commit(
        release(1, "user:alice"),
        Some(id(42)),
        Tracking::default(),
        None,
        vec![],
    );
    d.save(&layout).await.unwrap();
    assert!(layout.record("app").exists());
    d.forget(&layout).await.unwrap();
    assert!(!layout.deployment("app").exists());
    d.set_process(1, None, Tracking::default());
    d.save(&layout).await.unwrap();
    assert!(!layout.deployment("app").exists(), "no write after forget");
    assert!(d.begin().await.is_none());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replicas_are_recorded_restarted_and_taken_for_removal() {
    let d = Deployment::new(Record::new("app"));
    let replica = |port, pid| store::ReplicaRecord::new(port, Some(id(pid)), Tracking::default());
    d.commit(
        release(1, "user:alice"),
        Some(id(42)),
        Tracking::default(),
        Some(4001),
        vec![replica(4002, 43), replica(4003, 44)],
    );
    assert_eq!(d.private_ports(), [4001, 4002, 4003]);
    assert!(
        d.process_started(1, 2, Some(4003), id(45), &Tracking::default()),
        "replica 2 restarted"
    );
    assert!(!d.process_started(1, 2, Some(4003), id(45), &Tracking::default()));
    assert!(
        d.process_started(1, 7, Some(4009), id(46), &Tracking::default()),
        "a replica the record does not have: in flight"
    );
    assert_eq!(d.journal().starting.len(), 1);
    assert_eq!(d.recorded_replicas()[1].process(), Some(id(45)));
    let pids: Vec<u32> = d.running_apps().iter().map(|(p, _)| *p).collect();
    assert_eq!(pids, [42, 43, 45]);
    let stops = d.stop_for_removal();
    assert_eq!(stops.len(), 3, "the first process and both replicas");
    assert!(d.recorded_replicas().is_empty());
}
