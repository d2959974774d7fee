//! Each whole transition of a deployment: what its instances and record are after it, and
//! what was persisted (read back from the node-local store).

use std::sync::Arc;
use std::time::Duration;

use super::tests::release;
use super::*;
use crate::instance::tests::fake_instance;

pub(super) fn layout() -> (Layout, std::path::PathBuf) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("transitions-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    (Layout::new(dir.clone()), dir)
}

pub(super) async fn persisted(layout: &Layout) -> Record {
    store::load_all(layout)
        .await
        .pop()
        .expect("a record on disk")
}

pub(super) fn live(
    number: u32,
    private_port: Option<u16>,
    replicas: Vec<(Arc<Instance>, u16)>,
) -> Live {
    Live {
        release: release(number, "user:alice"),
        instance: Arc::new(fake_instance(number)),
        // A process that exists (the record names it by pid and start time).
        pid: std::process::id(),
        private_port,
        replicas,
        event: format!("release {number} deployed"),
    }
}

#[tokio::test(start_paused = true)]
async fn going_live_swaps_records_and_persists_in_one_transition() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    let replica = Arc::new(fake_instance(1));
    d.go_live(
        &layout,
        live(1, Some(41000), vec![(replica.clone(), 41001)]),
    )
    .await;
    assert_eq!(d.instance().map(|i| i.release), Some(1));
    assert_eq!(d.replicas().len(), 1);
    for r in [d.record(), persisted(&layout).await] {
        assert_eq!(r.current, Some(1));
        assert_eq!(r.pid, Some(std::process::id()));
        assert_eq!(r.private_port, Some(41000));
        assert_eq!(
            r.replicas
                .iter()
                .map(|r| r.private_port)
                .collect::<Vec<_>>(),
            [41001]
        );
        assert!(r.releases[0].result.is_ok());
        assert_eq!(
            r.last_event.map(|e| e.text).as_deref(),
            Some("release 1 deployed")
        );
    }
    // A deploy that failed before a release goes live is history then.
    d.failed(
        &layout,
        Some(release(2, "user:alice")),
        Failure::Deploy {
            number: 2,
            step: "health".into(),
            reason: "GET /health got 500".into(),
            text: "deploy of release 2 failed at health".into(),
        },
    )
    .await;
    assert_eq!(
        persisted(&layout).await.failed_deploy.map(|f| f.release),
        Some(2)
    );
    d.go_live(&layout, live(3, Some(41002), vec![])).await;
    let r = persisted(&layout).await;
    assert_eq!((r.current, r.failed_deploy.is_none()), (Some(3), true));
    assert_eq!(
        r.releases.iter().map(|r| r.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    d.previous_drained(&layout, 3, Duration::from_millis(12))
        .await;
    let r = persisted(&layout).await;
    assert_eq!(r.releases[2].previous_drained_ms, Some(12));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_recorded_only_beside_a_current_release() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    let restart = || Failure::Restart {
        text: "restart failed".into(),
    };
    // A failed first deploy changes nothing (it is discarded).
    d.failed(&layout, Some(release(1, "user:alice")), restart())
        .await;
    assert!(d.record().releases.is_empty() && d.record().last_event.is_none());
    d.go_live(&layout, live(1, None, vec![])).await;
    d.failed(&layout, None, restart()).await;
    let r = persisted(&layout).await;
    assert_eq!(r.releases.len(), 1);
    assert_eq!(
        r.last_event.map(|e| e.text).as_deref(),
        Some("restart failed")
    );
    assert!(
        r.failed_deploy.is_none(),
        "a failed restart is not a failed deploy"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_start_in_place_is_undone_to_what_still_serves() {
    let d = Deployment::new(Record::new("app"));
    let old = Arc::new(fake_instance(1));
    d.serve_from_start(old.clone());
    // Replace: the previous release stops for the port, the new one fails: nothing serves.
    assert_eq!(d.stopped_for_port().map(|i| i.release), Some(1));
    d.serve_from_start(Arc::new(fake_instance(2)));
    d.start_undone(None);
    assert!(d.instance().is_none());
    // Direct (another port): the previous release serves again.
    d.serve_from_start(Arc::new(fake_instance(2)));
    d.start_undone(Some(old));
    assert_eq!(d.instance().map(|i| i.release), Some(1));
}

#[tokio::test(start_paused = true)]
async fn replicas_are_taken_out_recovered_and_restarted_in_the_record() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    let replicas = vec![
        (Arc::new(fake_instance(1)), 41001),
        (Arc::new(fake_instance(1)), 41002),
    ];
    d.go_live(&layout, live(1, Some(41000), replicas)).await;
    // After an agent restart: replica 2's process was gone and starts again.
    let again = vec![Arc::new(fake_instance(1)), Arc::new(fake_instance(1))];
    d.replicas_recovered(again, &[2]);
    assert_eq!(d.record().replicas[1].pid, None);
    assert_eq!(d.replicas().len(), 2);
    d.recovered(Arc::new(fake_instance(1)), Some(1));
    assert_eq!(d.record().pid, None, "the first instance starts again");
    assert_eq!(d.take_replicas().len(), 2);
    assert!(d.replicas().is_empty() && d.record().replicas.is_empty());
    d.kept_running(1, std::process::id(), &fake_instance(1));
    assert_eq!(d.record().pid, Some(std::process::id()));
    d.stopped_by_user(&layout).await.unwrap();
    let r = persisted(&layout).await;
    assert!(r.stopped && r.private_port.is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn going_live_journals_the_previous_release_and_forgets_what_was_in_flight() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    // Release 1 runs as a real process (the record names it by pid and start time).
    let mut old = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let mut first = live(1, Some(41000), vec![]);
    first.pid = old.id();
    d.go_live(&layout, first).await;
    assert!(d.journal().is_empty(), "nothing served before release 1");
    // Release 2's process starts (in flight), then it goes live.
    let me = ProcId::of(std::process::id()).unwrap();
    assert!(d.process_started(2, 0, Some(41001), me, &Default::default()));
    assert_eq!(
        persisted(&layout).await.journal.starting.len(),
        0,
        "not saved by itself"
    );
    d.save(&layout).await.unwrap();
    assert_eq!(persisted(&layout).await.journal.starting.len(), 1);
    d.go_live(&layout, live(2, Some(41001), vec![])).await;
    let j = persisted(&layout).await.journal;
    assert!(j.starting.is_empty());
    let retiring = j.retiring.expect("release 1 drains");
    assert_eq!(retiring.release, 1);
    assert_eq!(
        retiring.procs.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [old.id()]
    );
    d.retired(&layout).await;
    assert!(persisted(&layout).await.journal.is_empty());
    // A release in flight that is abandoned.
    assert!(d.process_started(3, 0, Some(41002), me, &Default::default()));
    d.start_abandoned(&layout).await;
    assert!(persisted(&layout).await.journal.is_empty());
    let _ = old.kill();
    let _ = old.wait();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_replica_joins_at_the_end_and_leaves_from_it_through_the_journal() {
    let (layout, dir) = layout();
    let d = Deployment::new(Record::new("app"));
    d.go_live(&layout, live(1, Some(41000), vec![])).await;
    assert_eq!(d.running_count(), 1);
    // A new replica's process starts: in flight (the journal's) until it joins.
    let me = crate::procstat::ProcId::of(std::process::id()).unwrap();
    d.process_started(1, 1, Some(41001), me, &Default::default());
    assert_eq!(d.journal().starting.len(), 1);
    let added = Arc::new(fake_instance(1));
    assert!(
        !d.replica_added(&layout, 2, added.clone(), 41001).await,
        "not the current release"
    );
    assert!(d.replica_added(&layout, 1, added, 41001).await);
    let r = persisted(&layout).await;
    assert_eq!((r.replicas.len(), r.journal.starting.len()), (1, 0));
    assert_eq!(d.running_count(), 2);
    assert_eq!(d.private_ports(), [41000, 41001]);
    // It leaves: out of the record at once, retiring in the journal until it stopped.
    let leaving = d.replica_leaving(&layout).await.unwrap();
    assert_eq!((leaving.index, leaving.port), (1, 41001));
    let r = persisted(&layout).await;
    assert!(r.replicas.is_empty());
    assert_eq!(r.journal.retiring.as_ref().map(|j| j.release), Some(1));
    assert!(
        d.replica_leaving(&layout).await.is_none(),
        "the first one never leaves"
    );
    d.retired(&layout).await;
    assert!(persisted(&layout).await.journal.is_empty());
    // The last scalings only, oldest first.
    for n in 0..12 {
        d.scaled(&layout, 1, 2, format!("scaled {n}")).await;
    }
    let events = persisted(&layout).await.scale_events;
    assert_eq!(events.len(), crate::autoscale::SCALE_EVENTS_KEPT);
    assert_eq!(events[0].text, "scaled 2");
    // The autoscaler never waits behind a deploy.
    let op = d.begin().await.unwrap();
    assert!(d.try_begin().is_none());
    drop(op);
    assert!(d.try_begin().is_some());
    std::fs::remove_dir_all(dir).unwrap();
}
