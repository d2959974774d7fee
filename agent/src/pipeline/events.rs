//! Deploy progress: each step reports started / output / done / failed, to the client's
//! stream (if it is still listening) and to the deployment's `deploy.log`.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::metrics::Metrics;

pub(crate) const RESOLVE: &str = "resolve";
pub(crate) const FETCH: &str = "fetch";
pub(crate) const CHECKOUT: &str = "checkout";
pub(crate) const PACKAGES: &str = "packages";
/// Model and data files into the node's store and linked into the release.
pub(crate) const ARTIFACTS: &str = "artifacts";
pub(crate) const START_SCRIPT: &str = "start-script";
pub(crate) const START: &str = "start";
pub(crate) const HEALTH: &str = "health";
/// Traffic moves to the new release (node proxy) and the old one drains.
pub(crate) const SWITCH: &str = "switch";
/// The check that the port is free, before anything else.
pub(crate) const PORT: &str = "port";
/// The check that the owner has every secret the deployment lists.
pub(crate) const SECRETS: &str = "secrets";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Started,
    Output,
    Done,
    Skipped,
    Failed,
    Info,
}

/// How a deploy ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub ok: bool,
    pub release: u32,
    pub commit: String,
    pub git_ref: String,
    pub url: String,
    pub packages_hash: String,
    pub failed_step: String,
    pub reason: String,
    pub output_tail: Vec<String>,
    pub kept_release: u32,
    pub kept_healthy: bool,
    /// The kept release was stopped for the port and started again (as `kept_pid`).
    pub kept_restarted: bool,
    pub kept_pid: u32,
    pub total: Duration,
    /// The exact versions in the release's environment.
    pub frozen: Vec<String>,
    pub owner: String,
    /// The deployment's generation after it.
    pub generation: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub step: &'static str,
    pub phase: Phase,
    pub message: String,
    pub elapsed: Duration,
    pub outcome: Option<Outcome>,
    /// Set only on a refusal, the stream's last item (a deploy based on a stale
    /// generation): what changed.
    pub refused: Option<String>,
}

/// Why a step failed: the step, a reason a person can act on, and the output's tail.
#[derive(Debug, Clone)]
pub(crate) struct StepError {
    pub step: &'static str,
    pub reason: String,
    pub tail: Vec<String>,
}

impl StepError {
    pub(crate) fn new(step: &'static str, reason: impl Into<String>) -> Self {
        StepError {
            step,
            reason: reason.into(),
            tail: Vec::new(),
        }
    }

    pub(crate) fn with_tail(mut self, tail: Vec<String>) -> Self {
        self.tail = tail;
        self
    }
}

/// Where events go. Sending never fails the deploy: a client that went away just stops
/// receiving, and the deploy finishes anyway.
pub(crate) struct Events {
    tx: mpsc::UnboundedSender<Event>,
    /// The deploy log, appended to without a lock: each line is one `write` to a file
    /// opened with O_APPEND (a page-cache write, not worth a thread hop).
    log: OnceLock<File>,
    /// Where step durations are counted, if anywhere.
    metrics: Option<Arc<Metrics>>,
    /// Hides secret values in everything sent or logged.
    redactor: Mutex<crate::secrets::Redactor>,
    /// Where the summary of the steps goes at the end (beside the deploy log).
    summary: OnceLock<PathBuf>,
    /// Each finished step: its name, how it ended, how long it took.
    steps: Mutex<Vec<(&'static str, &'static str, u64)>>,
}

/// The file beside a deploy log with its last deploy's steps (for the agent's page).
pub(crate) fn summary_path(deploy_log: &std::path::Path) -> PathBuf {
    deploy_log.with_file_name("last-deploy.json")
}

impl Events {
    /// Events sent to `tx`; written to no file until [`Events::open_log`].
    pub(crate) fn new(tx: mpsc::UnboundedSender<Event>) -> Self {
        Events {
            tx,
            log: OnceLock::new(),
            metrics: None,
            redactor: Mutex::new(Default::default()),
            summary: OnceLock::new(),
            steps: Mutex::new(Vec::new()),
        }
    }

    /// From now on, events are also appended to `log` (its directory is created). A file
    /// that cannot be opened is logged; the deploy goes on without it.
    pub(crate) async fn open_log(&self, log: PathBuf) {
        let _ = self.summary.set(summary_path(&log));
        let opened = tokio::task::spawn_blocking(move || {
            if let Some(dir) = log.parent() {
                crate::fsmode::create_dir(dir, crate::fsmode::PRIVATE_DIR)?;
            }
            crate::fsmode::append_private(&log)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", log.display())))
        })
        .await;
        match opened {
            Ok(Ok(file)) => {
                let _ = self.log.set(file);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot open deploy log"),
            Err(e) => tracing::warn!(error = %e, "cannot open deploy log"),
        }
    }

    /// One line to the deploy log, if it is open.
    fn append(&self, line: String) {
        if let Some(mut f) = self.log.get() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// From now on, these secret values are replaced in every message and output line.
    pub(crate) fn set_redactor(&self, redactor: crate::secrets::Redactor) {
        if let Ok(mut r) = self.redactor.lock() {
            *r = redactor;
        }
    }

    /// `e` with secret values replaced in its reason and output (before it is kept).
    pub(crate) fn redact_error(&self, mut e: StepError) -> StepError {
        e.reason = self.redact(std::mem::take(&mut e.reason));
        e.tail = std::mem::take(&mut e.tail)
            .into_iter()
            .map(|l| self.redact(l))
            .collect();
        e
    }

    fn redact(&self, text: String) -> String {
        match self.redactor.lock() {
            Ok(r) if !r.is_empty() => r.text(&text),
            _ => text,
        }
    }

    /// Also counts each finished step's duration in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub(crate) fn emit(
        &self,
        step: &'static str,
        phase: Phase,
        message: impl Into<String>,
        elapsed: Duration,
    ) {
        let message = self.redact(message.into());
        let ended = match phase {
            Phase::Done => Some("ok"),
            Phase::Failed => Some("failed"),
            Phase::Skipped => Some("skipped"),
            _ => None,
        };
        if let (Some(how), Ok(mut steps)) = (ended, self.steps.lock()) {
            steps.push((step, how, elapsed.as_millis() as u64));
        }
        if let (Some(m), Phase::Done | Phase::Failed) = (&self.metrics, phase) {
            m.step_finished(step, phase == Phase::Done, elapsed);
        }
        let tag = match phase {
            Phase::Started => "...",
            Phase::Output => "  |",
            Phase::Done => "ok ",
            Phase::Skipped => "-- ",
            Phase::Failed => "ERR",
            Phase::Info => "   ",
        };
        self.append(format!("{tag} {step}: {message}\n"));
        let _ = self.tx.send(Event {
            step,
            phase,
            message,
            elapsed,
            outcome: None,
            refused: None,
        });
    }

    pub(crate) fn info(&self, step: &'static str, message: impl Into<String>) {
        self.emit(step, Phase::Info, message, Duration::ZERO);
    }

    pub(crate) fn output(&self, step: &'static str, line: &str) {
        self.emit(step, Phase::Output, line, Duration::ZERO);
    }

    pub(crate) fn skipped(&self, step: &'static str, message: impl Into<String>) {
        self.emit(step, Phase::Skipped, message, Duration::ZERO);
    }

    /// Runs one step: reports it started, then done (with the message the step returns) or
    /// failed (with the reason), with how long it took.
    pub(crate) async fn step<T, F>(
        &self,
        step: &'static str,
        what: impl Into<String>,
        work: F,
    ) -> Result<T, StepError>
    where
        F: Future<Output = Result<(T, String), StepError>>,
    {
        self.emit(step, Phase::Started, what, Duration::ZERO);
        let started = Instant::now();
        match work.await {
            Ok((value, message)) => {
                self.emit(step, Phase::Done, message, started.elapsed());
                Ok(value)
            }
            Err(err) => {
                self.emit(step, Phase::Failed, err.reason.clone(), started.elapsed());
                Err(err)
            }
        }
    }

    /// Writes the steps, their results and durations beside the deploy log (in the
    /// background: a small file the agent's page reads).
    fn write_summary(&self, outcome: &Outcome) {
        let Some(path) = self.summary.get().cloned() else {
            return;
        };
        let steps: Vec<serde_json::Value> = self
            .steps
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(step, result, ms)| serde_json::json!({"step": step, "result": result, "ms": ms}))
            .collect();
        let mut doc = serde_json::json!({
            "at": crate::clock::now_unix(), "ok": outcome.ok, "release": outcome.release,
            "total_ms": outcome.total.as_millis() as u64, "steps": steps,
        });
        if !outcome.ok {
            // Why, for the page (redacted like everything the deploy says).
            doc["failed_step"] = outcome.failed_step.clone().into();
            doc["reason"] = outcome.reason.clone().into();
        }
        // Private, like the deploy log beside it.
        let write = move || {
            if let Ok(mut f) = crate::fsmode::create_private(&path) {
                let _ = f.write_all(format!("{doc}\n").as_bytes());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(write);
            }
            Err(_) => write(),
        }
    }

    /// The last event: the outcome.
    pub(crate) fn finish(&self, mut outcome: Outcome) {
        outcome.reason = self.redact(std::mem::take(&mut outcome.reason));
        outcome.output_tail = std::mem::take(&mut outcome.output_tail)
            .into_iter()
            .map(|l| self.redact(l))
            .collect();
        let (phase, message) = if outcome.ok {
            (
                Phase::Done,
                format!("release {} is live at {}", outcome.release, outcome.url),
            )
        } else {
            (
                Phase::Failed,
                format!(
                    "deploy failed at {}: {}",
                    outcome.failed_step, outcome.reason
                ),
            )
        };
        if let Some(m) = &self.metrics {
            m.step_finished("deploy", outcome.ok, outcome.total);
        }
        self.append(format!("=== {message}\n"));
        self.write_summary(&outcome);
        let _ = self.tx.send(Event {
            step: "deploy",
            phase,
            message,
            elapsed: outcome.total,
            outcome: Some(outcome),
            refused: None,
        });
    }

    /// The deploy is refused before it began (based on a stale generation): the last item,
    /// which the client gets as FAILED_PRECONDITION with `why`.
    pub(crate) fn refuse(&self, why: String) {
        self.append(format!("=== refused: {why}\n"));
        let _ = self.tx.send(Event {
            step: "deploy",
            phase: Phase::Failed,
            message: why.clone(),
            elapsed: Duration::ZERO,
            outcome: None,
            refused: Some(why),
        });
    }
}
