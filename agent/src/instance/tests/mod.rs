//! The instance's state machine against the fake launcher, in paused time: restart
//! policies, crash-loop backoff, health, adoption, recovery and stops, each in milliseconds.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use fake::{Fake, Plan, FIRST_PID};

mod fake;
mod lifecycle;
mod restarts;
mod unhealthy;

/// What the instance told its observer, on tokio's clock.
#[derive(Default)]
struct Recorder {
    /// Each process started or adopted: when, and its pid.
    started: Mutex<Vec<(Instant, u32)>>,
    restarts: AtomicU32,
    /// Each time it left traffic (`false`) or came back (`true`), when.
    traffic: Mutex<Vec<(Instant, bool)>>,
}

impl Observer for Recorder {
    fn started(&self, _release: u32, id: ProcId, _tracking: &Tracking) {
        self.started.lock().unwrap().push((Instant::now(), id.pid));
    }
    fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::SeqCst);
    }
    fn checked(&self, _latency: Duration, _healthy: bool) {}
    fn traffic(&self, in_traffic: bool) {
        self.traffic
            .lock()
            .unwrap()
            .push((Instant::now(), in_traffic));
    }
}

impl Recorder {
    /// The time from each start to the next.
    fn gaps(&self) -> Vec<Duration> {
        let started = self.started.lock().unwrap();
        started.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }
}

const SECOND: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_secs(10);
const EXPLAINED_503: &str =
    "the health check of 127.0.0.1:8000 did not pass: GET /health returned HTTP 503";

fn config(fake: &Fake, restart: RestartPolicy, rec: &Arc<Recorder>) -> InstanceConfig {
    InstanceConfig {
        name: "app".into(),
        release: 1,
        limits: Default::default(),
        launch: Launch {
            command: "python3 app.py".into(),
            cwd: "/nonexistent".into(),
            env: vec![],
            path_prefix: None,
            walls: None,
            cgroups: Vec::new(),
        },
        log: "/nonexistent/instance-test/app.log".into(),
        host: "127.0.0.1".parse().unwrap(),
        port: 8000,
        health: HealthSpec {
            path: Some("/health".into()),
            timeout: HEALTH_TIMEOUT,
            interval: INTERVAL,
            unhealthy_after: 3,
            restart_after: 6,
        },
        restart,
        kill_timeout: Duration::from_secs(10),
        observer: rec.clone(),
        tracker: Arc::new(Tracker::new(Path::new("/nonexistent"), false)),
        launcher: Arc::new(fake.clone()),
    }
}

/// Polls the instance's status on the paused clock until `f` holds, at most `within`.
async fn until(
    inst: &Instance,
    within: Duration,
    what: &str,
    f: impl Fn(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let deadline = Instant::now() + within;
    loop {
        let s = inst.snapshot();
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "not {what} within {within:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn healthy_as(pid: u32) -> impl Fn(&InstanceStatus) -> bool {
    move |s| s.state == State::Healthy && s.pid == Some(pid)
}

/// `actual` is `expected`, give or take the clock's and the polling's few milliseconds.
fn assert_about(actual: Duration, expected: Duration) {
    let diff = actual.abs_diff(expected);
    assert!(diff <= 20 * MS, "{actual:?} is not about {expected:?}");
}

/// An instance of `release` that starts a running app on the fake launcher: for other
/// modules' tests that need instances (a deployment's transitions).
pub(crate) fn fake_instance(release: u32) -> Instance {
    let fake = Fake::new(true, []);
    let mut cfg = config(
        &fake,
        RestartPolicy::OnFailure,
        &Arc::new(Recorder::default()),
    );
    cfg.release = release;
    Instance::start(cfg).0
}

/// Starts a deploy of `plans` and waits until its first process is healthy.
async fn deployed(fake: &Fake, restart: RestartPolicy, rec: &Arc<Recorder>) -> Instance {
    let (inst, ready) = Instance::start(config(fake, restart, rec));
    assert_eq!(inst.snapshot().state, State::Deploying);
    assert_eq!(ready.await.unwrap().unwrap(), FIRST_PID);
    inst
}

/// Lets ten minutes pass and checks that nothing more was started.
async fn assert_no_more_starts(fake: &Fake, starts: u32) {
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fake.spawned(), starts);
}
