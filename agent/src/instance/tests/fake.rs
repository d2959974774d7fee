//! A launcher for the instance's unit tests: apps that run, exit or cannot start as the
//! test plans, and health the test turns on and off. Everything happens on tokio's clock,
//! so a test with paused time runs minutes of supervision in milliseconds.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::health::Checked;
use crate::instance::launcher::{App, BoxFuture, Launcher, Released};
use crate::instance::InstanceConfig;
use crate::process::{Exit, Stopped};
use crate::procstat::ProcId;
use crate::tracking::Tracking;

/// What one start of the app does.
#[derive(Debug, Clone, Copy)]
pub(super) enum Plan {
    /// Runs until stopped (or ended by the test).
    Runs,
    /// Exits with this code this long after it started.
    Exits(Duration, i32),
    /// Cannot be started at all (as when the program does not exist).
    CannotStart,
}

/// The first pid the fake gives out; the n-th start gets `FIRST_PID + n - 1`.
pub(super) const FIRST_PID: u32 = 1000;

#[derive(Default)]
struct World {
    /// What the next starts do, in order; once they are used up, an app runs.
    plans: VecDeque<Plan>,
    healthy: bool,
    /// Where apps listen; checks are refused while they are unhealthy and this is set.
    listening: Vec<(IpAddr, u16)>,
    /// Starts so far (failed ones included).
    spawned: u32,
    /// Every app started or adopted: its pid and how to end it.
    apps: Vec<(u32, Arc<watch::Sender<Option<Exit>>>)>,
    /// Pids of the apps stopped, in order.
    stopped: Vec<u32>,
}

/// The fake launcher; clones share one world.
#[derive(Clone, Default)]
pub(super) struct Fake(Arc<Mutex<World>>);

impl Fake {
    /// Apps whose health checks pass (or fail) until told otherwise.
    pub(super) fn new(healthy: bool, plans: impl IntoIterator<Item = Plan>) -> Fake {
        let fake = Fake::default();
        fake.world().healthy = healthy;
        fake.world().plans.extend(plans);
        fake
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    pub(super) fn set_healthy(&self, healthy: bool) {
        self.world().healthy = healthy;
    }

    /// Apps listen on `at` (not on the checked port: checks are refused).
    pub(super) fn set_listening(&self, at: Vec<(IpAddr, u16)>) {
        self.world().listening = at;
    }

    /// The app `pid` ends now, as `exit` says.
    pub(super) fn end(&self, pid: u32, exit: Exit) {
        let world = self.world();
        let (_, tx) = world.apps.iter().find(|(p, _)| *p == pid).unwrap();
        end(tx, exit);
    }

    pub(super) fn spawned(&self) -> u32 {
        self.world().spawned
    }

    pub(super) fn stopped(&self) -> Vec<u32> {
        self.world().stopped.clone()
    }

    fn app(&self, id: ProcId, adopted: bool) -> (FakeApp, Arc<watch::Sender<Option<Exit>>>) {
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        self.world().apps.push((id.pid, tx.clone()));
        let app = FakeApp {
            id,
            adopted,
            tracking: Tracking::default(),
            exit: rx,
            fake: self.clone(),
        };
        (app, tx)
    }
}

/// Ends an app unless it has ended already; whether it was running.
fn end(tx: &watch::Sender<Option<Exit>>, exit: Exit) -> bool {
    tx.send_if_modified(|e| e.is_none() && e.replace(exit).is_none())
}

/// An exit with `code`, as our child's exit status reports it.
fn code(code: i32) -> Exit {
    Exit::Status(ExitStatus::from_raw(code << 8))
}

impl Launcher for Fake {
    fn spawn(&self, _cfg: &InstanceConfig) -> io::Result<Box<dyn App>> {
        let plan = {
            let mut world = self.world();
            world.spawned += 1;
            world.plans.pop_front().unwrap_or(Plan::Runs)
        };
        let pid = FIRST_PID + self.spawned() - 1;
        if let Plan::CannotStart = plan {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no such program: app",
            ));
        }
        let (app, tx) = self.app(ProcId { pid, start_time: 1 }, false);
        if let Plan::Exits(after, c) = plan {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                end(&tx, code(c));
            });
        }
        Ok(Box::new(app))
    }

    fn adopt(&self, id: ProcId, _tracking: Tracking) -> Box<dyn App> {
        Box::new(self.app(id, true).0)
    }

    fn check<'a>(
        &'a self,
        _host: IpAddr,
        _port: u16,
        path: Option<&'a str>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Checked> {
        let (healthy, refused) = {
            let w = self.world();
            (w.healthy, !w.healthy && !w.listening.is_empty())
        };
        let path = path.unwrap_or("/");
        Box::pin(std::future::ready(Checked {
            healthy,
            summary: if healthy {
                "HTTP 200 in 1 ms".to_string()
            } else if refused {
                "connection refused".to_string()
            } else {
                format!("GET {path} returned HTTP 503")
            },
            refused,
        }))
    }
}

struct FakeApp {
    id: ProcId,
    adopted: bool,
    tracking: Tracking,
    /// `Some` once it has ended.
    exit: watch::Receiver<Option<Exit>>,
    fake: Fake,
}

impl App for FakeApp {
    fn id(&self) -> ProcId {
        self.id
    }

    fn tracking(&self) -> &Tracking {
        &self.tracking
    }

    fn adopted(&self) -> bool {
        self.adopted
    }

    fn try_wait(&mut self) -> BoxFuture<'_, Option<Exit>> {
        Box::pin(std::future::ready(*self.exit.borrow()))
    }

    fn wait(&mut self) -> BoxFuture<'_, Exit> {
        Box::pin(async move {
            let exit = self
                .exit
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|e| *e);
            match exit {
                Some(exit) => exit,
                // Never: the sender lives in the fake's world as long as the test.
                None => std::future::pending().await,
            }
        })
    }

    fn stop(
        &mut self,
        _grace: Duration,
        _port: Option<(IpAddr, u16)>,
        released: Released,
    ) -> BoxFuture<'_, Stopped> {
        let mut world = self.fake.world();
        world.stopped.push(self.id.pid);
        let (_, tx) = world.apps.iter().find(|(p, _)| *p == self.id.pid).unwrap();
        // Our fake apps exit on SIGTERM at once.
        let how = if end(tx, Exit::Status(ExitStatus::from_raw(15))) {
            Stopped::Terminated
        } else {
            Stopped::NotRunning
        };
        released(how);
        Box::pin(std::future::ready(how))
    }

    fn explain_unhealthy<'a>(
        &'a self,
        host: IpAddr,
        port: u16,
        checked: &'a Checked,
    ) -> BoxFuture<'a, String> {
        Box::pin(std::future::ready(format!(
            "the health check of {host}:{port} did not pass: {}",
            checked.summary
        )))
    }

    fn listening(&self) -> BoxFuture<'_, Vec<(IpAddr, u16)>> {
        Box::pin(std::future::ready(self.fake.world().listening.clone()))
    }
}
