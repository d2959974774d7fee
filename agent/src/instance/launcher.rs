//! The seam between an instance's state machine and the node: what starts the app,
//! watches it, stops it and checks its health. The agent uses [`Processes`] (real child
//! processes, real checks over the network); the unit tests use a fake in paused time.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use super::InstanceConfig;
use crate::health;
use crate::process::{self, AppProcess, Exit, Stopped};
use crate::procstat::ProcId;
use crate::tracking::{self, Tracking};

/// A future a trait object can return (the traits are used as `dyn`).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Told how a stop went, once: early when the app let go of its port while still exiting.
pub(crate) type Released = Box<dyn FnOnce(Stopped) + Send>;

/// Starts (or adopts) an instance's app and checks its health.
pub(crate) trait Launcher: Send + Sync {
    /// Starts a new process of the release `cfg` describes, tracked as a new instance.
    fn spawn(&self, cfg: &InstanceConfig) -> io::Result<Box<dyn App>>;

    /// Takes over a process started by an earlier run of the agent.
    fn adopt(&self, id: ProcId, tracking: Tracking) -> Box<dyn App>;

    /// One health check of `host:port`: an HTTP GET of `path` when given, else a connect.
    fn check<'a>(
        &'a self,
        host: IpAddr,
        port: u16,
        path: Option<&'a str>,
        timeout: Duration,
    ) -> BoxFuture<'a, health::Checked>;
}

/// One run of an app, as its instance sees it.
pub(crate) trait App: Send {
    /// Its first process (the leader of its process group).
    fn id(&self) -> ProcId;

    /// How all its processes are found.
    fn tracking(&self) -> &Tracking;

    /// Whether it was adopted rather than started by this run of the agent.
    fn adopted(&self) -> bool;

    /// How it ended, if it has.
    fn try_wait(&mut self) -> BoxFuture<'_, Option<Exit>>;

    /// Waits for it to end. Cancel-safe.
    fn wait(&mut self) -> BoxFuture<'_, Exit>;

    /// SIGTERM to all its processes, `grace`, then SIGKILL. With `port`, `released` is
    /// told as soon as nothing listens on it any more (the app may still be exiting);
    /// else, or if it exits first, how the stop ended.
    fn stop(
        &mut self,
        grace: Duration,
        port: Option<(IpAddr, u16)>,
        released: Released,
    ) -> BoxFuture<'_, Stopped>;

    /// Why a failed check of `host:port` failed, in words a person can act on.
    fn explain_unhealthy<'a>(
        &'a self,
        host: IpAddr,
        port: u16,
        checked: &'a health::Checked,
    ) -> BoxFuture<'a, String>;

    /// Where its processes listen now (TCP).
    fn listening(&self) -> BoxFuture<'_, Vec<(IpAddr, u16)>>;
}

/// The real launcher: child processes (`process`) and checks over the network (`health`).
#[derive(Debug)]
pub(crate) struct Processes;

impl Launcher for Processes {
    fn spawn(&self, cfg: &InstanceConfig) -> io::Result<Box<dyn App>> {
        let tracking = cfg
            .tracker
            .new_instance(&cfg.name, cfg.release, &cfg.limits)?;
        match process::spawn_app(&cfg.launch, &cfg.log, &tracking) {
            Ok(app) => Ok(Box::new(app)),
            Err(e) => {
                tracking::release(&tracking);
                Err(e)
            }
        }
    }

    fn adopt(&self, id: ProcId, tracking: Tracking) -> Box<dyn App> {
        Box::new(AppProcess::adopt(id, tracking))
    }

    fn check<'a>(
        &'a self,
        host: IpAddr,
        port: u16,
        path: Option<&'a str>,
        timeout: Duration,
    ) -> BoxFuture<'a, health::Checked> {
        Box::pin(health::check(host, port, path, timeout))
    }
}

impl App for AppProcess {
    fn id(&self) -> ProcId {
        self.id
    }

    fn tracking(&self) -> &Tracking {
        &self.tracking
    }

    fn adopted(&self) -> bool {
        AppProcess::adopted(self)
    }

    fn try_wait(&mut self) -> BoxFuture<'_, Option<Exit>> {
        Box::pin(AppProcess::try_wait(self))
    }

    fn wait(&mut self) -> BoxFuture<'_, Exit> {
        Box::pin(AppProcess::wait(self))
    }

    fn stop(
        &mut self,
        grace: Duration,
        port: Option<(IpAddr, u16)>,
        released: Released,
    ) -> BoxFuture<'_, Stopped> {
        let let_go = move || async move {
            match port {
                Some((host, port)) => process::port_free(host, port).await,
                None => false,
            }
        };
        Box::pin(process::stop_group_releasing(self, grace, let_go, released))
    }

    fn explain_unhealthy<'a>(
        &'a self,
        host: IpAddr,
        port: u16,
        checked: &'a health::Checked,
    ) -> BoxFuture<'a, String> {
        Box::pin(crate::explain::explain_unhealthy(host, port, self, checked))
    }

    fn listening(&self) -> BoxFuture<'_, Vec<(IpAddr, u16)>> {
        let (pid, tracking) = (self.pid(), self.tracking.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                crate::ports::listening_of(&crate::tracking::members(pid, &tracking))
            })
            .await
            .unwrap_or_default()
        })
    }
}
