//! A running app that stops answering: out of traffic after `unhealthy_after` failed
//! checks, restarted after `restart_after`, back in traffic once a check passes.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_hung_app_leaves_traffic_at_unhealthy_after_and_is_restarted_at_restart_after() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;
    let broke = Instant::now();
    fake.set_healthy(false);

    let s = until(&inst, 60 * SECOND, "unhealthy", |s| {
        s.state == State::Unhealthy
    })
    .await;
    assert_about(broke.elapsed(), 3 * INTERVAL);
    assert!(s.out_of_traffic, "{s:?}");
    assert_eq!(s.message, EXPLAINED_503);
    assert_eq!(s.pid, Some(FIRST_PID), "not restarted yet");
    let traffic = rec.traffic.lock().unwrap().clone();
    assert_eq!(traffic.len(), 1, "{traffic:?}");
    assert!(!traffic[0].1);
    assert_about(traffic[0].0 - broke, 3 * INTERVAL);

    // Still unhealthy at the fifth failure, restarted at the sixth.
    tokio::time::sleep(2 * INTERVAL + INTERVAL / 2).await;
    assert_eq!(inst.snapshot().state, State::Unhealthy);
    assert!(fake.stopped().is_empty());
    let waiting = |s: &InstanceStatus| s.state == State::Failed && s.next_restart_at.is_some();
    until(&inst, INTERVAL, "restarting", waiting).await;
    assert_about(broke.elapsed(), 6 * INTERVAL);
    assert_eq!(fake.stopped(), [FIRST_PID]);

    // The restarted process is out of traffic until it is healthy, then back in.
    fake.set_healthy(true);
    let s = until(&inst, 5 * SECOND, "restarted", healthy_as(FIRST_PID + 1)).await;
    assert!(!s.out_of_traffic);
    let traffic = rec.traffic.lock().unwrap().clone();
    assert_eq!(
        traffic.iter().map(|t| t.1).collect::<Vec<_>>(),
        [false, true]
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_that_passes_again_brings_it_back_without_a_restart() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::Always, &rec).await;
    fake.set_healthy(false);
    until(&inst, 40 * SECOND, "unhealthy", |s| {
        s.state == State::Unhealthy
    })
    .await;

    fake.set_healthy(true);
    let s = until(&inst, 2 * INTERVAL, "healthy again", healthy_as(FIRST_PID)).await;
    assert!(!s.out_of_traffic);
    assert_eq!(s.message, "");
    assert_eq!(fake.spawned(), 1);
    let traffic = rec.traffic.lock().unwrap().clone();
    assert_eq!(
        traffic.iter().map(|t| t.1).collect::<Vec<_>>(),
        [false, true]
    );
    // Two failures do not take it out again: the count starts over.
    fake.set_healthy(false);
    tokio::time::sleep(2 * INTERVAL + INTERVAL / 2).await;
    assert_eq!(inst.snapshot().state, State::Healthy);
    assert_eq!(rec.traffic.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn failure_counts_come_from_the_spec() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let mut cfg = config(&fake, RestartPolicy::OnFailure, &rec);
    cfg.health.interval = SECOND;
    cfg.health.unhealthy_after = 2;
    cfg.health.restart_after = 4;
    let (inst, ready) = Instance::start(cfg);
    ready.await.unwrap().unwrap();
    let broke = Instant::now();
    fake.set_healthy(false);
    until(&inst, 10 * SECOND, "unhealthy", |s| {
        s.state == State::Unhealthy
    })
    .await;
    assert_about(broke.elapsed(), 2 * SECOND);
    let restarting = |s: &InstanceStatus| s.state == State::Failed && s.next_restart_at.is_some();
    until(&inst, 10 * SECOND, "restarting", restarting).await;
    assert_about(broke.elapsed(), 4 * SECOND);
}
