//! Stopping an app: SIGTERM to all its processes, a grace period, then SIGKILL; the one
//! stop for every process the agent runs, child or adopted. It looks at `/proc` every few
//! milliseconds while it waits, each look on a blocking thread.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{blocking, AppProcess};
use crate::procstat;
use crate::tracking::{self, Tracking};

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// It had already exited.
    NotRunning,
    /// It exited after SIGTERM.
    Terminated,
    /// It had to be killed with SIGKILL after the grace period.
    Killed,
    /// It let go of what the caller waited for (its port) after SIGTERM and is still
    /// exiting; the stop goes on (SIGKILL after the grace period) without the caller.
    Exiting,
}

impl Stopped {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stopped::NotRunning => "not running",
            Stopped::Terminated => "terminated",
            Stopped::Killed => "killed",
            Stopped::Exiting => "exiting",
        }
    }
}

/// Whether any process of the group is still alive. Zombies do not count: an adopted app's
/// dead members are reaped by init, or, where init does not reap, stay zombies forever.
#[cfg(test)]
pub(crate) fn group_alive(pgid: u32) -> bool {
    use nix::{errno::Errno, sys::signal::killpg, unistd::Pid};
    match killpg(Pid::from_raw(pgid as i32), None) {
        Err(Errno::ESRCH) => false,
        _ => procstat::group_has_live_member(pgid),
    }
}

/// Stops an app: SIGTERM to all its processes (group, cgroup or marked), waits up to
/// `grace` for all of them (every thread) to end, then SIGKILL. Reaps the leader when it is
/// our child, and removes the instance's cgroup. The one stop for every process the agent
/// runs, child or adopted.
pub(crate) async fn stop_group(proc_: &mut AppProcess, grace: Duration) -> Stopped {
    stop_group_releasing(proc_, grace, || std::future::ready(false), |_| {}).await
}

/// How often a stopping group is looked at: often at first (most apps stop within a few
/// hundred ms and a deploy may be waiting), less after a second.
fn stop_poll(waited: Duration) -> Duration {
    if waited < Duration::from_secs(1) {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(20)
    }
}

/// [`stop_group`] that also tells `released`, once, as soon as the app has let go of what
/// a caller waits for (`let_go()` holds, e.g. nothing listens on its port any more) while
/// it is still exiting ([`Stopped::Exiting`]), or how it stopped if that comes first. The
/// stop itself goes on to the end (SIGKILL after `grace`).
pub(crate) async fn stop_group_releasing<F: Future<Output = bool>>(
    proc_: &mut AppProcess,
    grace: Duration,
    mut let_go: impl FnMut() -> F,
    released: impl FnOnce(Stopped),
) -> Stopped {
    let mut released = Some(released);
    /// Tells the caller (if not told yet) and returns `how`.
    fn tell(released: &mut Option<impl FnOnce(Stopped)>, how: Stopped) -> Stopped {
        if let Some(f) = released.take() {
            f(how);
        }
        how
    }
    let how = stop_all(proc_, grace, &mut let_go, &mut released).await;
    if !proc_.members_alive().await {
        let t = proc_.tracking.clone();
        blocking(move || tracking::release(&t), ()).await;
    }
    tell(&mut released, how)
}

async fn stop_all<F: Future<Output = bool>>(
    proc_: &mut AppProcess,
    grace: Duration,
    let_go: &mut impl FnMut() -> F,
    released: &mut Option<impl FnOnce(Stopped)>,
) -> Stopped {
    let pgid = proc_.pid();
    if pgid <= 1 {
        return Stopped::NotRunning;
    }
    // Reap first if it already exited, so a zombie leader does not look alive.
    let leader_done = proc_.try_wait().await.is_some();
    if leader_done && !proc_.members_alive().await {
        return Stopped::NotRunning;
    }
    // An adopted leader's pid may have been reused by a stranger (which may lead a group of
    // its own): never signal its group then. (While any member of our group lives, the
    // kernel keeps its id reserved, so a pid that is gone or a zombie of ours is safe.)
    let start_time = proc_.id.start_time;
    let reused = proc_.adopted()
        && blocking(
            move || procstat::read(pgid).is_some_and(|s| s.start_time != start_time),
            true,
        )
        .await;
    let group = !reused;
    if !signal_all(pgid, &proc_.tracking, Signal::SIGTERM, group).await {
        proc_.try_wait().await;
        return Stopped::NotRunning;
    }
    let began = Instant::now();
    let deadline = began + grace;
    let mut reaped = leader_done;
    loop {
        if !reaped && proc_.try_wait().await.is_some() {
            reaped = true;
        }
        if reaped && !proc_.members_alive().await {
            return Stopped::Terminated;
        }
        if released.is_some() && let_go().await {
            if let Some(f) = released.take() {
                f(Stopped::Exiting);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let step = stop_poll(now - began).min(deadline - now);
        if reaped || proc_.adopted() {
            tokio::time::sleep(step).await;
        } else {
            // Our child: its exit wakes us at once.
            let _ = tokio::time::timeout(step, proc_.wait()).await;
        }
    }
    signal_all(pgid, &proc_.tracking, Signal::SIGKILL, group).await;
    // Processes die on SIGKILL at once; wait briefly for the kernel (and reap ours).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let leader_gone = proc_.try_wait().await.is_some() || proc_.adopted();
        if leader_gone && !proc_.members_alive().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Stopped::Killed
}

/// [`tracking::signal`] on a blocking thread (without a cgroup it looks through `/proc`).
async fn signal_all(pgid: u32, t: &Tracking, sig: Signal, group: bool) -> bool {
    let t = t.clone();
    // Unknown (it panicked): as if signalled, so the stop waits and then kills.
    blocking(move || tracking::signal(pgid, &t, sig, group), true).await
}

/// Whether a new socket could listen on `host:port` (nothing listens there any more): the
/// `let_go` of a stop that waits for an app's port. Reads `/proc/net` on a blocking thread.
pub(crate) async fn port_free(host: IpAddr, port: u16) -> bool {
    blocking(move || crate::ports::bindable(host, port), false).await
}

#[cfg(test)]
mod tests {
    use super::super::{spawn_app, Launch};
    use super::*;

    /// Listens on 127.0.0.1:PORT; on SIGTERM closes the socket at once but exits only 2 s
    /// later (like uvicorn, which lets go of its port ~100 ms before it exits).
    const SLOW_EXIT: &str = r#"
import signal, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
def term(*_):
    s.close()
    time.sleep(2)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(1)
"#;

    #[tokio::test]
    async fn a_stop_answers_once_the_port_is_free_and_then_finishes() {
        let dir = std::env::temp_dir().join(format!("stop-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.py"), SLOW_EXIT).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let launch = Launch {
            // Not `exec`: the group's leader is sh, the listener its child.
            command: format!("python3 app.py {port}"),
            cwd: dir.clone(),
            env: vec![],
            path_prefix: None,
            walls: None,
            cgroups: Vec::new(),
        };
        let mut app = spawn_app(&launch, &dir.join("app.log"), &Tracking::default()).unwrap();
        let pgid = app.pid();
        let deadline = Instant::now() + Duration::from_secs(20);
        while crate::ports::bindable(host, port) {
            assert!(Instant::now() < deadline, "the test app never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let (tx, rx) = tokio::sync::oneshot::channel();
        let stop = tokio::spawn(async move {
            stop_group_releasing(
                &mut app,
                Duration::from_secs(10),
                move || port_free(host, port),
                move |how| {
                    let _ = tx.send((how, group_alive(pgid)));
                },
            )
            .await
        });
        let (how, alive) = rx.await.unwrap();
        assert_eq!(how, Stopped::Exiting);
        assert!(alive, "answered while the app was still exiting");
        assert!(crate::ports::bindable(host, port));
        assert_eq!(stop.await.unwrap(), Stopped::Terminated);
        assert!(!group_alive(pgid));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
