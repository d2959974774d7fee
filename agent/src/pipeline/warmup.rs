//! warmup: the declaration's `warmup` requests, sent to each instance of the new release
//! once it is ready and before traffic moves to it (the first user request does not pay
//! for a JIT, a cache or a lazily loaded model). An error answer, or none within the
//! startup timeout, fails the deploy like a failed health check: the previous release keeps
//! serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::events::{self, Events, StepError};
use super::start::Started;
use crate::spec::{Spec, Warmup};
use crate::supervisor::Supervisor;

/// Sends every warm-up to every instance of the new release, in order; the first that
/// fails fails the step (nothing when the deployment has none).
pub(super) async fn run(
    sup: &Supervisor,
    spec: &Spec,
    started: &Started,
    events: &Events,
) -> Result<(), StepError> {
    if spec.warmup.is_empty() {
        return Ok(());
    }
    let targets: Vec<SocketAddr> = match started.private_port {
        Some(_) => started
            .ports()
            .iter()
            .map(|p| sup.app_host().private_address(*p))
            .collect(),
        None => vec![SocketAddr::new(sup.config().app_host, spec.port)],
    };
    let began = Instant::now();
    events.emit(
        events::WARMUP,
        events::Phase::Started,
        format!(
            "{} request{} to each of {} instance{}",
            spec.warmup.len(),
            plural(spec.warmup.len()),
            targets.len(),
            plural(targets.len())
        ),
        Duration::ZERO,
    );
    let timeout = spec.health.timeout;
    let mut last = String::new();
    for addr in &targets {
        for w in &spec.warmup {
            match send(*addr, w, timeout).await {
                Ok(done) => {
                    events.emit(
                        events::WARMUP,
                        events::Phase::Output,
                        done.clone(),
                        began.elapsed(),
                    );
                    last = done;
                }
                Err(reason) => {
                    events.emit(
                        events::WARMUP,
                        events::Phase::Failed,
                        reason.clone(),
                        began.elapsed(),
                    );
                    return Err(StepError::new(events::WARMUP, reason));
                }
            }
        }
    }
    events.emit(events::WARMUP, events::Phase::Done, last, began.elapsed());
    Ok(())
}

/// Every warm-up to the instance at `addr`, in order (a replica the load adds, before it
/// takes requests): the first failure's reason.
pub(crate) async fn warm_one(spec: &Spec, addr: SocketAddr) -> Result<(), String> {
    for w in &spec.warmup {
        send(addr, w, spec.health.timeout).await?;
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One warm-up to `addr`: "POST /predict on 127.0.0.1:41234: HTTP 200 in 812 ms", or why
/// it failed.
async fn send(addr: SocketAddr, w: &Warmup, timeout: Duration) -> Result<String, String> {
    let what = format!("warm-up {} {} on {addr}", w.method, w.path);
    let began = Instant::now();
    let answer = tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        crate::health::request(stream, addr, &w.method, &w.path, &w.body, true)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    match answer {
        Err(_) => Err(format!(
            "{what} got no answer within {} (health.startup_timeout)",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(format!("{what} failed: {e}")),
        Ok(Ok((status, _))) if (200..400).contains(&status) => Ok(format!(
            "{what}: HTTP {status} in {} ms",
            began.elapsed().as_millis()
        )),
        Ok(Ok((status, body))) => {
            let body = body.trim();
            Err(if body.is_empty() {
                format!("{what} returned HTTP {status}")
            } else {
                format!("{what} returned HTTP {status}: {body}")
            })
        }
    }
}
