//! Restart policies and the crash-loop backoff, as status shows them.

use super::*;

#[tokio::test(start_paused = true)]
async fn on_failure_policy_restarts_an_app_that_exits_with_an_error() {
    let fake = Fake::new(true, [Plan::Exits(100 * MS, 3)]);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;

    let s = until(&inst, 5 * SECOND, "restarted", healthy_as(FIRST_PID + 1)).await;
    assert_eq!(s.restarts, 1);
    assert_eq!(s.last_exit_code, Some(3));
    assert_eq!(rec.restarts.load(Ordering::SeqCst), 1);
    assert_about(rec.gaps()[0], 100 * MS + SECOND);
}

#[tokio::test(start_paused = true)]
async fn on_failure_policy_does_not_restart_a_clean_exit() {
    let fake = Fake::new(true, [Plan::Exits(100 * MS, 0)]);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;

    let s = until(&inst, 5 * SECOND, "stopped", |s| s.state == State::Stopped).await;
    assert_eq!(s.last_exit_code, Some(0));
    assert_eq!(s.message, "the app exited with code 0");
    assert_eq!(s.pid, None);
    assert_no_more_starts(&fake, 1).await;
    let s = inst.snapshot();
    assert_eq!(
        (s.state, s.restarts, s.next_restart_at),
        (State::Stopped, 0, None)
    );
}

#[tokio::test(start_paused = true)]
async fn always_policy_restarts_a_clean_exit() {
    let fake = Fake::new(true, [Plan::Exits(100 * MS, 0)]);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::Always, &rec).await;

    let s = until(&inst, 5 * SECOND, "restarted", healthy_as(FIRST_PID + 1)).await;
    assert_eq!((s.restarts, s.last_exit_code), (1, Some(0)));
}

#[tokio::test(start_paused = true)]
async fn never_policy_leaves_a_failed_app_failed() {
    let fake = Fake::new(true, [Plan::Exits(100 * MS, 1)]);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::Never, &rec).await;

    let s = until(&inst, 5 * SECOND, "failed", |s| s.state == State::Failed).await;
    assert_eq!(s.message, "the app exited with code 1");
    assert_no_more_starts(&fake, 1).await;
    let s = inst.snapshot();
    assert_eq!(
        (s.state, s.restarts, s.next_restart_at),
        (State::Failed, 0, None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_backs_off_doubling_up_to_a_minute() {
    let fake = Fake::new(true, [Plan::Exits(100 * MS, 1); 9]);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;

    let last = FIRST_PID + 9;
    let s = until(&inst, 600 * SECOND, "up again", healthy_as(last)).await;
    assert_eq!(s.restarts, 9);
    let backoffs = [1, 2, 4, 8, 16, 32, 60, 60, 60];
    for (gap, backoff) in rec.gaps().into_iter().zip(backoffs) {
        assert_about(gap, 100 * MS + backoff * SECOND);
    }
}

#[tokio::test(start_paused = true)]
async fn the_backoff_starts_over_once_the_app_stayed_up_a_minute() {
    let crash = Plan::Exits(100 * MS, 1);
    let plans = [
        crash,
        crash,
        crash,
        // Not a minute: the backoff goes on growing.
        Plan::Exits(59 * SECOND, 1),
        // A minute: it starts over.
        Plan::Exits(60 * SECOND, 1),
        crash,
    ];
    let fake = Fake::new(true, plans);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;

    until(&inst, 600 * SECOND, "up again", healthy_as(FIRST_PID + 6)).await;
    let expected = [
        100 * MS + SECOND,
        100 * MS + 2 * SECOND,
        100 * MS + 4 * SECOND,
        59 * SECOND + 8 * SECOND,
        60 * SECOND + SECOND,
        100 * MS + 2 * SECOND,
    ];
    let gaps = rec.gaps();
    assert_eq!(gaps.len(), expected.len());
    for (gap, expected) in gaps.into_iter().zip(expected) {
        assert_about(gap, expected);
    }
}

#[tokio::test(start_paused = true)]
async fn status_shows_when_the_next_restart_comes() {
    let fake = Fake::new(true, [Plan::Exits(100 * MS, 1), Plan::Exits(100 * MS, 1)]);
    let rec = Arc::new(Recorder::default());
    let inst = deployed(&fake, RestartPolicy::OnFailure, &rec).await;

    let waiting = |s: &InstanceStatus| s.state == State::Failed && s.next_restart_at.is_some();
    let s = until(&inst, 5 * SECOND, "waiting to restart", waiting).await;
    let at = s.next_restart_at.unwrap();
    assert_about(at - Instant::now(), SECOND);
    assert_eq!((s.pid, s.restarts), (None, 0));

    let s = until(&inst, 5 * SECOND, "restarted", |s| s.restarts == 1).await;
    assert!(Instant::now() >= at);
    assert_eq!(s.pid, Some(FIRST_PID + 1));
    // The second crash waits twice as long.
    let s = until(&inst, 5 * SECOND, "waiting again", |s| {
        s.restarts == 1 && s.next_restart_at.is_some()
    })
    .await;
    assert_about(s.next_restart_at.unwrap() - Instant::now(), 2 * SECOND);
}
