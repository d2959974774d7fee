//! The deploys a deployment keeps by the client's ids, its generation, and a deploy an
//! agent restart finds interrupted.

use super::tests::release;
use super::transition_tests::{layout, live, persisted};
use super::*;
use crate::deployment::deploys::IN_PROGRESS;

fn ended(release: u32, result: &str) -> Ended {
    Ended {
        release,
        git_ref: "v2".into(),
        commit: "c0ffee".into(),
        packages_hash: String::new(),
        result: result.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_change_of_what_runs_makes_a_deploy_based_on_before_stale() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    assert_eq!(d.generation(), 0);
    assert_eq!(d.stale_base(None), None, "no basis: no check");
    assert_eq!(d.stale_base(Some(0)), None);
    d.go_live(&layout, live(1, None, vec![])).await;
    assert_eq!(d.generation(), 1);
    assert_eq!(persisted(&layout).await.generation, 1);
    let why = d.stale_base(Some(0)).expect("stale");
    assert!(why.contains("app changed on this agent"), "{why}");
    assert!(
        why.contains("generation 1 here, the change was based on 0"),
        "{why}"
    );
    assert!(why.contains("release 1 (main"), "{why}");
    assert_eq!(d.stale_base(Some(1)), None);
    d.stopped_by_user(&layout).await.unwrap();
    assert_eq!(d.generation(), 2);
    assert!(d.stale_base(Some(1)).unwrap().contains("it was stopped"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn deploys_are_kept_by_id_with_their_results_in_progress_last() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    d.queued("d-2", "v3");
    d.deploy_began("d-1", "v2", 2);
    let recent = d.snapshot().deploys;
    let ids: Vec<(&str, &str)> = recent
        .iter()
        .map(|r| (r.id.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(ids, [("d-1", IN_PROGRESS), ("d-2", IN_PROGRESS)]);
    d.deploy_ended(&layout, ended(2, "failed at health: GET /health got 500"))
        .await;
    d.unqueued("d-2");
    let kept = persisted(&layout).await;
    assert!(kept.deploying.is_none());
    assert_eq!(kept.deploys.len(), 1);
    assert_eq!(kept.deploys[0].id, "d-1");
    assert_eq!(kept.deploys[0].commit, "c0ffee");
    assert_eq!(
        kept.deploys[0].result,
        "failed at health: GET /health got 500"
    );
    for n in 0..(store::DEPLOYS_KEPT + 5) {
        d.deploy_began(&format!("n-{n}"), "main", 3);
        d.deploy_ended(&layout, ended(3, "ok")).await;
    }
    let kept = persisted(&layout).await.deploys;
    assert_eq!(kept.len(), store::DEPLOYS_KEPT);
    assert_eq!(kept[0].id, "n-5", "the oldest are forgotten");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_deploy_an_agent_restart_finds_in_progress_was_interrupted() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    d.go_live(&layout, live(1, None, vec![])).await;
    d.deploy_began("d-1", "v2", 2);
    let mut r = release(2, "user:alice");
    r.git_ref = "v2".into();
    d.deploy_prepared(&layout, &r, "start").await;
    let pid = ProcId {
        pid: 4242,
        start_time: 9,
    };
    assert!(d.process_started(2, 0, Some(41001), pid, &Tracking::default()));
    assert!(
        !d.process_started(2, 0, Some(41001), pid, &Tracking::default()),
        "once"
    );
    d.save(&layout).await.unwrap();

    // The agent restarts: the record is read back.
    let d = Deployment::new(persisted(&layout).await);
    let i = d.take_interrupted().expect("interrupted");
    assert_eq!(i.release, 2);
    assert!(i.orphan, "release 2 is no release of the record");
    assert_eq!(i.processes.iter().map(|p| p.0).collect::<Vec<_>>(), [pid]);
    assert_eq!(
        i.result,
        "failed at health: interrupted: the agent stopped during the deploy"
    );
    let snap = d.snapshot();
    let last = snap.deploys.last().unwrap();
    assert_eq!((last.id.as_str(), last.git_ref.as_str()), ("d-1", "v2"));
    assert_eq!(last.result, i.result);
    assert_eq!(
        snap.failed_deploy.map(|f| (f.release, f.step)),
        Some((2, "health".into()))
    );
    assert!(snap.last_event.unwrap().text.contains("release 1 kept"));
    assert_eq!(d.generation(), 1, "what runs did not change");
    assert!(d.take_interrupted().is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_deploy_that_went_live_before_the_agent_stopped_is_ok() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    d.deploy_began("d-1", "main", 1);
    d.go_live(&layout, live(1, None, vec![])).await;
    let d = Deployment::new(persisted(&layout).await);
    let i = d.take_interrupted().expect("in progress when it stopped");
    assert_eq!(i.result, "ok");
    assert!(!i.orphan);
    assert_eq!(d.snapshot().failed_deploy, None);
    std::fs::remove_dir_all(dir).unwrap();
}
