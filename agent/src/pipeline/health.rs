//! health: waits until the new release's instance says it is healthy (its health check
//! passed, see [`crate::health`]) or that it never will be (it exited, or the health
//! timeout passed).

use std::time::{Duration, Instant};

use super::events::{self, Events, StepError};
use super::start::Started;
use crate::instance::StartFailure;
use crate::spec::{Spec, Strategy};
use crate::supervisor::NodeServices;

/// How often a release that is not healthy yet says how it goes.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// "still starting: 1m20s of 10m, last check: connection refused, last line of its log:
/// Loading checkpoint shards 3/4".
fn still_starting(waited: Duration, timeout: Duration, check: &str, line: Option<&str>) -> String {
    let secs =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    let mut text = format!("still starting: {} of {}", secs(waited), secs(timeout));
    if !check.is_empty() {
        text.push_str(&format!(", last check: {check}"));
    }
    if let Some(l) = line.map(str::trim).filter(|l| !l.is_empty()) {
        let l: String = l.chars().take(200).collect();
        text.push_str(&format!(", last line of its log: {l}"));
    }
    text
}

/// The new release's pid once healthy.
pub(super) async fn wait(
    node: &NodeServices,
    spec: &Spec,
    started: &mut Started,
    events: &Events,
) -> Result<u32, StepError> {
    // Where the instance listens: its private port behind the node proxy, or the port.
    let (host, port) = match started.private_port {
        Some(p) => (node.app_host().private_ip().to_string(), p),
        None => (node.config().app_host.to_string(), spec.port),
    };
    let target = match &spec.health.path {
        Some(p) if started.private_port.is_some() => format!("GET http://{host}:{port}{p}"),
        Some(p) => format!("GET {}{p}", node.app_url(spec.port)),
        None => format!("TCP connect to {host}:{port}"),
    };
    let began = Instant::now();
    events.emit(
        events::HEALTH,
        events::Phase::Started,
        format!(
            "{target} (up to {})",
            humantime::format_duration(spec.health.timeout)
        ),
        Default::default(),
    );
    let gone = || StartFailure {
        reason: "the app's supervisor ended unexpectedly".into(),
        tail: vec![],
    };
    let mut result = loop {
        tokio::select! {
            r = &mut started.ready => break r.unwrap_or_else(|_| Err(gone())),
            // A slow starter (a model loading) is never silent: how long, what the last
            // check saw, and the app's last line, every few seconds.
            _ = tokio::time::sleep(PROGRESS_EVERY) => {
                let last_line = crate::logs::last_lines(&node.layout().app_log(&spec.name), 0, 1).await;
                let line = still_starting(
                    began.elapsed(),
                    spec.health.timeout,
                    &started.instance.snapshot().last_health,
                    last_line.first().map(String::as_str),
                );
                events.emit(events::HEALTH, events::Phase::Output, line, began.elapsed());
            }
        }
    };
    // Every replica must become healthy too (they start at the same time).
    let n = started.replicas.len() + 1;
    for (i, (_, ready, port)) in started.replicas.iter_mut().enumerate() {
        if result.is_err() {
            break;
        }
        if let Err(mut failure) = ready.await.unwrap_or_else(|_| Err(gone())) {
            failure.reason = format!(
                "replica {} of {n} ({}): {}",
                i + 2,
                node.app_host().private_address(*port),
                failure.reason
            );
            result = Err(failure);
        }
    }
    match result {
        Ok(pid) => {
            events.emit(
                events::HEALTH,
                events::Phase::Done,
                started.instance.snapshot().last_health,
                began.elapsed(),
            );
            Ok(pid)
        }
        Err(mut failure) => {
            if let Some(hint) = binds_public_port(spec, &failure) {
                failure.reason = format!("{}; {hint}", failure.reason);
            }
            if let Some(hint) = changes_directory(&spec.command) {
                failure.reason = format!("{}; {hint}", failure.reason);
            }
            events.emit(
                events::HEALTH,
                events::Phase::Failed,
                failure.reason.clone(),
                began.elapsed(),
            );
            Err(StepError::new(events::HEALTH, failure.reason).with_tail(failure.tail))
        }
    }
}

/// A command that changes directory (`cd src && python app.py`) runs its app somewhere the
/// release's paths and imports do not expect: name `--workdir`, which does it properly.
fn changes_directory(command: &str) -> Option<String> {
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
        .filter(|w| !w.is_empty())
        .collect();
    let at = words.iter().position(|w| *w == "cd" || *w == "pushd")?;
    let dir = words.get(at + 1).copied().unwrap_or("DIR");
    Some(format!(
        "the command changes directory (`cd {dir}`): give the directory as the deployment's workdir instead (--workdir {dir}, relative to the repository), so the app, its imports and its environment all start there"
    ))
}

/// Behind the node proxy, an app that binds the deployment's port itself (a hard-coded
/// port) either finds it taken by the proxy or listens where the health check does not
/// look: say so, with both fixes.
fn binds_public_port(spec: &Spec, failure: &StartFailure) -> Option<String> {
    if spec.strategy != Strategy::Switch {
        return None;
    }
    let port = format!(":{}", spec.port);
    // "... the app listens on 10.0.0.5:8000 instead: ..."
    let listens_there = failure.reason.split("listens on").skip(1).any(|rest| {
        rest.split_whitespace()
            .take_while(|w| *w != "instead:")
            .any(|w| w.trim_end_matches([',', ';']).ends_with(&port))
    });
    let refused = failure
        .tail
        .iter()
        .any(|l| l.contains("Address already in use") || l.contains("address already in use"));
    (listens_there || refused).then(|| {
        format!(
            "the app binds port {} itself, which the node proxy holds for it: make it listen on $HOST:$PORT (a private port the agent chooses), or deploy with `strategy: recreate` (--strategy recreate) to let it bind {} directly, with an outage at each redeploy",
            spec.port, spec.port
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{changes_directory, still_starting};
    use std::time::Duration;

    #[test]
    fn a_slow_start_says_how_it_goes() {
        let line = still_starting(
            Duration::from_millis(80_400),
            Duration::from_secs(600),
            "connection refused",
            Some("Loading checkpoint shards 3/4\n"),
        );
        assert_eq!(
            line,
            "still starting: 1m 20s of 10m, last check: connection refused, last line of its log: Loading checkpoint shards 3/4"
        );
        assert_eq!(
            still_starting(Duration::from_secs(5), Duration::from_secs(120), "", None),
            "still starting: 5s of 2m"
        );
    }

    #[test]
    fn a_cd_in_the_command_is_named_with_the_workdir_to_use() {
        let hint = changes_directory("cd src && python -m app").unwrap();
        assert!(hint.contains("--workdir src"), "{hint}");
        assert!(changes_directory("python app.py; cd /tmp").is_some());
        assert!(changes_directory("uvicorn app:app --port $PORT").is_none());
        assert!(changes_directory("python abcd.py").is_none());
    }
}
