//! The node proxy watched for real: its exit is known at once (a pidfd, or a ping that finds
//! it gone) and it is started again with every socket and route; it is pinged every
//! second, and one that does not answer (stopped, hung) makes the health endpoints of the
//! deployments behind it answer 503 "node proxy not answering" within 2 s and is replaced
//! within 4 s; every few seconds its table is compared with what the agent decided, and any
//! difference is repaired.

use std::time::Duration;

use tokio::time::Instant;

use super::control::PING_TIMEOUT;
use super::node::{Inner, NodeProxy};
use super::reconcile::{self, describe, Step, Why};
use crate::procstat::ProcId;

/// How often the proxy is pinged.
const PING_PERIOD: Duration = Duration::from_secs(1);
/// Without an answer for this long, the deployments behind it are not served.
const NOT_ANSWERING: Duration = Duration::from_secs(2);
/// ... and for this long, it is replaced.
const REPLACE_AFTER: Duration = Duration::from_secs(4);
/// How often its table is compared with the agent's.
const RECONCILE_PERIOD: Duration = Duration::from_secs(2);

/// The health endpoints' state for the deployments behind a proxy that does not serve.
pub(crate) const NOT_ANSWERING_STATE: &str = "node proxy not answering";

impl NodeProxy {
    /// Watches the proxy forever. `ready` says whether the agent has taken over every
    /// deployment (routes it has not decided are removed only then).
    pub(crate) async fn watch(&self, ready: impl Fn() -> bool) {
        let mut exits = self.exited.lock().await;
        let mut tick = tokio::time::interval(PING_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answered = Instant::now();
        let mut reconciled = Instant::now();
        loop {
            tokio::select! {
                Some(id) = exits.recv() => {
                    self.on_exit(id).await;
                    answered = Instant::now();
                    continue;
                }
                _ = tick.tick() => {}
            }
            let Some(id) = self.seen() else {
                answered = Instant::now();
                self.start_if_wanted().await;
                continue;
            };
            match self.client.table(PING_TIMEOUT).await {
                Ok(reply) if reply.pid == id.pid => {
                    answered = Instant::now();
                    self.set_trouble(None);
                    if reconciled.elapsed() >= RECONCILE_PERIOD {
                        reconciled = Instant::now();
                        self.reconcile(ready()).await;
                    }
                }
                other => {
                    if !id.is_running() {
                        self.on_exit(id).await;
                        answered = Instant::now();
                        continue;
                    }
                    let silent = answered.elapsed();
                    let why = other
                        .err()
                        .map_or_else(|| "another process answers".into(), |e| e.to_string());
                    if silent >= REPLACE_AFTER {
                        self.replace(id, silent, &why).await;
                        answered = Instant::now();
                    } else if silent >= NOT_ANSWERING {
                        self.set_trouble(Some(not_answering(id, silent, "replacing it soon")));
                    }
                }
            }
        }
    }

    /// The proxy `id` exited: started again at once (its sockets stayed open with the
    /// agent, so connections waited in their backlogs).
    async fn on_exit(&self, id: ProcId) {
        let mut inner = self.inner.lock().await;
        if inner.running != Some(id) {
            // Stopped or replaced on purpose.
            return;
        }
        let how = super::stop::reap(id);
        tracing::error!(
            pid = id.pid,
            "the node proxy {how}; starting it again (its ports stayed open: connections wait for it)"
        );
        self.let_go(&mut inner);
        self.restart(&mut inner, id).await;
    }

    /// The proxy `id` has not answered for `silent`: killed (a change waiting for its
    /// answer fails now), and another started with every socket and route.
    async fn replace(&self, id: ProcId, silent: Duration, why: &str) {
        let text = not_answering(id, silent, "replacing it");
        tracing::error!(error = %why, "{text}");
        self.set_trouble(Some(text));
        super::stop::kill_and_wait(id).await;
        let mut inner = self.inner.lock().await;
        if inner.running != Some(id) {
            return;
        }
        self.let_go(&mut inner);
        self.restart(&mut inner, id).await;
    }

    async fn restart(&self, inner: &mut Inner, old: ProcId) {
        let began = Instant::now();
        match self.start(inner).await {
            Ok(new) => {
                self.set_trouble(None);
                tracing::info!(
                    pid = new.pid,
                    "replaced the node proxy (pid {}) in {} ms, with every listening socket and route",
                    old.pid,
                    began.elapsed().as_millis()
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the node proxy again");
                self.set_trouble(Some(format!(
                    "{NOT_ANSWERING_STATE}: it is gone and cannot be started again: {e}"
                )));
            }
        }
    }

    /// Starts a proxy when none runs and routes are decided (a start that failed before).
    async fn start_if_wanted(&self) {
        let Ok(mut inner) = self.inner.try_lock() else {
            return;
        };
        if inner.running.is_some() || inner.decided.is_empty() {
            return;
        }
        match self.adopt_or_start(&mut inner).await {
            Ok(_) => self.set_trouble(None),
            Err(e) => {
                let text = format!("{NOT_ANSWERING_STATE}: it cannot be started: {e}");
                if self.trouble().as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %e, "cannot start the node proxy");
                }
                self.set_trouble(Some(text));
            }
        }
    }

    /// Compares the proxy's table with the agent's routes and repairs every difference.
    /// Skipped while a change is in progress (the next round sees its outcome).
    async fn reconcile(&self, ready: bool) {
        let Ok(mut inner) = self.inner.try_lock() else {
            return;
        };
        let Some(id) = inner.running else {
            return;
        };
        let Ok(reply) = self.client.table(PING_TIMEOUT).await else {
            return;
        };
        inner.generations.above(reply.newest);
        self.take_listeners(&mut inner, &reply.table).await;
        let steps = reconcile::plan(&inner.decided, &reply.table, &inner.unsure, ready);
        for step in steps {
            self.repair(&mut inner, step).await;
        }
        if ready && inner.decided.is_empty() && reply.table.is_empty() {
            tracing::info!(pid = id.pid, "the node proxy serves no deployment");
            self.stop(&mut inner, id).await;
        }
    }

    async fn repair(&self, inner: &mut Inner, step: Step) {
        let (listen, result, why) = match step {
            Step::Set { route, why } => {
                let listen = route.listen;
                (listen, self.send_decided(inner, listen).await, why)
            }
            Step::Remove { listen, why } => {
                inner.listeners.remove(&listen);
                let result = self.send_remove(inner, listen).await;
                if result.is_ok() {
                    inner.unsure.remove(&listen);
                }
                (listen, result, why)
            }
        };
        if let Err(e) = result {
            let e = e.to_string();
            if inner.failing.insert(listen, e.clone()).as_ref() != Some(&e) {
                tracing::warn!(%listen, error = %e, "cannot make the node proxy route as the agent decided");
            }
            return;
        }
        inner.failing.remove(&listen);
        let want = inner.decided.get(&listen).map(describe);
        let name = inner.decided.get(&listen).map(|r| r.name.clone());
        let name = name.unwrap_or_default();
        match (why, want) {
            (Why::Differs(had), Some(want)) => {
                tracing::warn!(%listen, deployment = %name, "the node proxy routed {listen} to {}, not as the agent decided ({want}): routed again", describe(&had))
            }
            (Why::Missing, Some(want)) => {
                tracing::warn!(%listen, deployment = %name, "the node proxy had no route for {listen}: routed again to {want}")
            }
            (Why::Stray(had), _) => {
                tracing::warn!(%listen, deployment = %had.name, "the node proxy routed {listen} to {}, which the agent does not route: removed", describe(&had))
            }
            (why, _) if !why.is_a_difference() => {
                tracing::debug!(%listen, "sent the agent's route again, newer")
            }
            (why, _) => {
                tracing::warn!(%listen, ?why, "the node proxy's route differed from the agent's: repaired")
            }
        }
    }
}

fn not_answering(id: ProcId, silent: Duration, doing: &str) -> String {
    format!(
        "{NOT_ANSWERING_STATE}: pid {} has not answered on its control socket for {} s; {doing}",
        id.pid,
        silent.as_secs()
    )
}
