//! A deploy's first start, health after it, adoption, recovery and stops.

use super::*;
use crate::process::Exit;

#[tokio::test(start_paused = true)]
async fn a_deploy_that_never_becomes_healthy_fails_after_the_health_timeout_with_the_reason() {
    let fake = Fake::new(false, []);
    let rec = Arc::new(Recorder::default());
    let began = Instant::now();
    let (inst, ready) = Instance::start(config(&fake, RestartPolicy::Always, &rec));

    let failure = ready.await.unwrap().unwrap_err();
    assert_about(began.elapsed(), HEALTH_TIMEOUT);
    assert_eq!(failure.reason, EXPLAINED_503);
    assert_eq!(fake.stopped(), [FIRST_PID]);
    let s = inst.snapshot();
    assert_eq!((s.state, s.pid), (State::Failed, None));
    assert_eq!(s.message, EXPLAINED_503);
    // A deploy is not retried: the deploy falls back instead.
    assert_no_more_starts(&fake, 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_deploy_that_listens_elsewhere_fails_within_seconds_not_after_the_timeout() {
    let fake = Fake::new(false, []);
    fake.set_listening(vec![("127.0.0.1".parse().unwrap(), 9999)]);
    let rec = Arc::new(Recorder::default());
    let began = Instant::now();
    let (_inst, ready) = Instance::start(config(&fake, RestartPolicy::Always, &rec));

    let failure = ready.await.unwrap().unwrap_err();
    let took = began.elapsed();
    assert!(
        took >= crate::instance::task::ELSEWHERE_GRACE && took < 5 * SECOND,
        "failed after {took:?}"
    );
    assert!(took < HEALTH_TIMEOUT);
    assert!(
        failure.reason.contains("connection refused"),
        "{}",
        failure.reason
    );
    assert_eq!(fake.stopped(), [FIRST_PID]);
}

#[tokio::test(start_paused = true)]
async fn a_deploy_whose_app_exits_before_becoming_healthy_reports_the_exit() {
    let fake = Fake::new(false, [Plan::Exits(2 * SECOND, 2)]);
    let rec = Arc::new(Recorder::default());
    let began = Instant::now();
    let (inst, ready) = Instance::start(config(&fake, RestartPolicy::Always, &rec));

    let failure = ready.await.unwrap().unwrap_err();
    assert_about(began.elapsed(), 2 * SECOND);
    assert_eq!(
        failure.reason,
        "the app exited with code 2 before becoming healthy"
    );
    assert_eq!(inst.snapshot().last_exit_code, Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_command_that_cannot_start_fails_the_deploy_with_the_error() {
    let fake = Fake::new(true, [Plan::CannotStart]);
    let rec = Arc::new(Recorder::default());
    let (inst, ready) = Instance::start(config(&fake, RestartPolicy::Always, &rec));

    let failure = ready.await.unwrap().unwrap_err();
    assert_eq!(
        failure.reason,
        "cannot start the command: no such program: app"
    );
    assert_eq!(inst.snapshot().state, State::Failed);
    assert!(rec.started.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_running_app_is_unhealthy_after_three_failed_checks_and_healthy_once_one_passes() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::Never, &rec).await;
    let broke = Instant::now();
    fake.set_healthy(false);

    // Two failed checks (10 s and 20 s on): still healthy, the check says what it saw.
    tokio::time::sleep(25 * SECOND).await;
    let s = inst.snapshot();
    assert_eq!(s.state, State::Healthy);
    assert_eq!(s.last_health, "GET /health returned HTTP 503");

    let s = until(&inst, 60 * SECOND, "unhealthy", |s| {
        s.state == State::Unhealthy
    })
    .await;
    assert_about(broke.elapsed(), 3 * INTERVAL);
    assert_eq!(s.message, EXPLAINED_503);

    fake.set_healthy(true);
    let s = until(&inst, 2 * INTERVAL, "healthy again", healthy_as(FIRST_PID)).await;
    assert_eq!(
        (s.message.as_str(), s.last_health.as_str()),
        ("", "HTTP 200 in 1 ms")
    );
    // Under `never`, an unhealthy app is left running.
    assert!(fake.stopped().is_empty());
    assert_eq!(fake.spawned(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_app_that_stays_unhealthy_is_restarted_by_its_policy() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;
    fake.set_healthy(false);

    let waiting = |s: &InstanceStatus| s.state == State::Failed && s.next_restart_at.is_some();
    let s = until(&inst, 90 * SECOND, "given up on", waiting).await;
    assert_eq!(fake.stopped(), [FIRST_PID]);
    assert_eq!(
        s.message,
        format!("{EXPLAINED_503} (6 checks in a row failed)")
    );
    assert_eq!(s.last_exit_code, None);

    fake.set_healthy(true);
    let s = until(&inst, 5 * SECOND, "restarted", healthy_as(FIRST_PID + 1)).await;
    assert_eq!(s.restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_app_that_exits_is_restarted_by_its_policy() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let id = ProcId {
        pid: 4242,
        start_time: 9,
    };
    let inst = Instance::adopt(
        config(&fake, RestartPolicy::OnFailure, &rec),
        id,
        Tracking::default(),
    );
    let s = inst.snapshot();
    assert!(s.adopted);
    assert_eq!(s.pid, Some(4242));
    assert_eq!(rec.started.lock().unwrap()[0].1, 4242);
    until(&inst, 5 * SECOND, "healthy", healthy_as(4242)).await;
    assert_eq!(fake.spawned(), 0);

    // Its exit status is not ours to know: it counts as a failure.
    fake.end(4242, Exit::Vanished);
    let waiting = |s: &InstanceStatus| s.state == State::Failed && s.next_restart_at.is_some();
    let s = until(&inst, 5 * SECOND, "waiting to restart", waiting).await;
    assert_eq!(
        s.message,
        "the app ended (exit status unknown: it was started by an earlier run of the agent)"
    );
    let s = until(&inst, 5 * SECOND, "restarted", healthy_as(FIRST_PID)).await;
    assert!(!s.adopted);
    assert_eq!(s.restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_app_that_exits_under_never_policy_stays_failed() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let id = ProcId {
        pid: 4242,
        start_time: 9,
    };
    let inst = Instance::adopt(
        config(&fake, RestartPolicy::Never, &rec),
        id,
        Tracking::default(),
    );
    until(&inst, 5 * SECOND, "healthy", healthy_as(4242)).await;

    fake.end(4242, Exit::Vanished);
    until(&inst, 5 * SECOND, "failed", |s| s.state == State::Failed).await;
    assert_no_more_starts(&fake, 0).await;
}

#[tokio::test(start_paused = true)]
async fn a_restored_release_that_does_not_become_healthy_is_retried_like_a_restart() {
    let fake = Fake::new(false, []);
    let rec = Arc::new(Recorder::default());
    let began = Instant::now();
    let inst = Instance::restore(config(&fake, RestartPolicy::OnFailure, &rec));
    let s = inst.snapshot();
    assert_eq!((s.state, s.pid), (State::Pending, Some(FIRST_PID)));

    let waiting = |s: &InstanceStatus| s.state == State::Failed && s.next_restart_at.is_some();
    let s = until(&inst, 60 * SECOND, "given up on", waiting).await;
    assert_about(began.elapsed(), HEALTH_TIMEOUT);
    assert_eq!(s.message, EXPLAINED_503);
    assert_eq!(fake.stopped(), [FIRST_PID]);

    fake.set_healthy(true);
    let s = until(&inst, 5 * SECOND, "restarted", healthy_as(FIRST_PID + 1)).await;
    assert_eq!(s.restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_the_backoff_cancels_the_restart() {
    let fake = Fake::new(true, [Plan::Exits(100 * MS, 1)]);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;
    let waiting = |s: &InstanceStatus| s.state == State::Failed && s.next_restart_at.is_some();
    until(&inst, 5 * SECOND, "waiting to restart", waiting).await;

    assert_eq!(inst.stop().await, (None, Stopped::NotRunning));
    let s = inst.snapshot();
    assert_eq!((s.state, s.next_restart_at), (State::Stopped, None));
    assert_no_more_starts(&fake, 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_waiting_for_health_stops_the_app_and_ends_the_deploy() {
    let fake = Fake::new(false, []);
    let rec = Arc::new(Recorder::default());
    let (inst, ready) = Instance::start(config(&fake, RestartPolicy::Always, &rec));
    tokio::time::sleep(SECOND).await;

    assert_eq!(inst.stop().await, (Some(FIRST_PID), Stopped::Terminated));
    assert_eq!(fake.stopped(), [FIRST_PID]);
    let s = inst.snapshot();
    assert_eq!((s.state, s.pid), (State::Stopped, None));
    assert!(
        ready.await.is_err(),
        "the deploy was told the app became healthy"
    );
    assert_no_more_starts(&fake, 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_stopped_instance_answers_later_stops_with_not_running() {
    let fake = Fake::new(true, []);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::Always, &rec).await;

    assert_eq!(
        inst.stop_freeing_port().await,
        (Some(FIRST_PID), Stopped::Terminated)
    );
    assert_eq!(inst.snapshot().state, State::Stopped);
    assert_eq!(inst.stop().await, (None, Stopped::NotRunning));
    assert_no_more_starts(&fake, 1).await;
}
