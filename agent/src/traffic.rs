//! What the node proxy served, over time: the agent asks the proxy for its counts every
//! [`SAMPLE_PERIOD`] and keeps [`KEEP`] of them per public address, so `status` can say how
//! busy each deployment was over the last minute (requests per second, p50/p99 latency,
//! 5xx rate) without asking the proxy while it answers, and `/metrics` has the last counts.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::{Counts, RouteStats};

/// How often the proxy's counts are sampled.
pub(crate) const SAMPLE_PERIOD: Duration = Duration::from_secs(2);
/// How much history is kept per route.
const KEEP: Duration = Duration::from_secs(15 * 60);
/// The window `status` reports on.
const WINDOW: Duration = Duration::from_secs(60);

/// A route's traffic over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rates {
    pub requests_per_second: f64,
    /// Seconds; `None` without requests in the window.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// The fraction of requests answered 5xx (by the app, or by the proxy after holding).
    pub error_rate: f64,
    pub in_flight: u64,
    /// The window the figures are over.
    pub window: Duration,
}

#[derive(Default)]
pub(crate) struct Traffic {
    series: Mutex<HashMap<SocketAddr, VecDeque<(Instant, Counts)>>>,
    latest: Mutex<Vec<RouteStats>>,
}

impl Traffic {
    fn series(&self) -> MutexGuard<'_, HashMap<SocketAddr, VecDeque<(Instant, Counts)>>> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps one sample of every route's counts, taken at `now`.
    pub(crate) fn record(&self, now: Instant, routes: Vec<RouteStats>) {
        {
            let mut series = self.series();
            series.retain(|listen, _| routes.iter().any(|r| r.listen == *listen));
            for r in &routes {
                let s = series.entry(r.listen).or_default();
                s.push_back((now, r.totals.clone()));
                while s
                    .front()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) > KEEP)
                {
                    s.pop_front();
                }
            }
        }
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// The last counts the proxy gave.
    pub(crate) fn latest(&self) -> Vec<RouteStats> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The traffic on `listen` over the last minute (what samples there are of it).
    pub(crate) fn last_minute(&self, listen: SocketAddr) -> Option<Rates> {
        let in_flight = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|r| r.listen == listen)
            .map(|r| {
                r.serving
                    .iter()
                    .chain(&r.draining)
                    .map(|b| b.in_flight)
                    .sum()
            })
            .unwrap_or(0);
        let series = self.series();
        let samples = series.get(&listen)?;
        let (newest_at, newest) = samples.back()?;
        let (oldest_at, oldest) = samples
            .iter()
            .find(|(t, _)| newest_at.saturating_duration_since(*t) <= WINDOW)?;
        let window = newest_at.saturating_duration_since(*oldest_at);
        let counted = newest.since(oldest);
        let requests = counted.requests();
        Some(Rates {
            requests_per_second: if window.is_zero() {
                0.0
            } else {
                requests as f64 / window.as_secs_f64()
            },
            p50: counted.quantile(0.5),
            p99: counted.quantile(0.99),
            error_rate: if requests == 0 {
                0.0
            } else {
                counted.by_class[4] as f64 / requests as f64
            },
            in_flight,
            window,
        })
    }
}

/// One minute of a route's traffic, for the agent's page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Minute {
    /// How long ago the minute ended (0: the last one).
    pub minutes_ago: u32,
    pub requests_per_second: f64,
    pub p99: Option<f64>,
    pub error_rate: f64,
}

impl Traffic {
    /// The traffic on `listen` minute by minute over the kept history (15 minutes), oldest
    /// first; minutes without two samples are left out.
    pub(crate) fn per_minute(&self, listen: SocketAddr) -> Vec<Minute> {
        let series = self.series();
        let Some(samples) = series.get(&listen) else {
            return Vec::new();
        };
        let Some((newest_at, _)) = samples.back() else {
            return Vec::new();
        };
        let minutes = (KEEP.as_secs() / WINDOW.as_secs()) as u32;
        let mut out = Vec::new();
        for k in (0..minutes).rev() {
            let end = newest_at.checked_sub(WINDOW * k);
            let start = newest_at.checked_sub(WINDOW * (k + 1));
            let (Some(end), Some(start)) = (end, start) else {
                continue;
            };
            let inside: Vec<&(Instant, Counts)> = samples
                .iter()
                .filter(|(t, _)| *t >= start && *t <= end)
                .collect();
            let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
                continue;
            };
            let span = last.0.saturating_duration_since(first.0);
            if span.is_zero() {
                continue;
            }
            let counted = last.1.since(&first.1);
            let requests = counted.requests();
            out.push(Minute {
                minutes_ago: k,
                requests_per_second: requests as f64 / span.as_secs_f64(),
                p99: counted.quantile(0.99),
                error_rate: if requests == 0 {
                    0.0
                } else {
                    counted.by_class[4] as f64 / requests as f64
                },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProxyMode;

    #[tokio::test(start_paused = true)]
    async fn minutes_are_the_differences_within_each_minute() {
        let listen: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let traffic = Traffic::default();
        let t0 = Instant::now();
        traffic.record(t0, vec![route(listen, 0, 0, 2)]);
        traffic.record(t0 + Duration::from_secs(30), vec![route(listen, 300, 0, 2)]);
        traffic.record(t0 + Duration::from_secs(60), vec![route(listen, 600, 0, 2)]);
        traffic.record(t0 + Duration::from_secs(90), vec![route(listen, 600, 0, 2)]);
        traffic.record(
            t0 + Duration::from_secs(120),
            vec![route(listen, 600, 60, 2)],
        );
        let m = traffic.per_minute(listen);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].minutes_ago, 1);
        assert!((m[0].requests_per_second - 10.0).abs() < 1e-9, "{m:?}");
        assert!((m[1].requests_per_second - 1.0).abs() < 1e-9, "{m:?}");
        assert!((m[1].error_rate - 1.0).abs() < 1e-9, "{m:?}");
    }

    fn route(listen: SocketAddr, ok: u64, errors: u64, latency_bucket: usize) -> RouteStats {
        let mut latency = vec![0; 15];
        latency[latency_bucket] = ok + errors;
        RouteStats {
            listen,
            mode: ProxyMode::Http,
            serving: vec![],
            draining: vec![],
            totals: Counts {
                by_class: [0, ok, 0, 0, errors],
                latency,
                ..Default::default()
            },
            unavailable: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_minute_is_the_difference_of_its_samples() {
        let listen: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let traffic = Traffic::default();
        let t0 = Instant::now();
        // Ten minutes ago: a thousand requests, outside the window.
        traffic.record(t0, vec![route(listen, 1000, 0, 2)]);
        traffic.record(
            t0 + Duration::from_secs(540),
            vec![route(listen, 1000, 0, 2)],
        );
        // Over the last minute: 600 more, 6 of them 5xx, all within 5..10 ms.
        traffic.record(
            t0 + Duration::from_secs(600),
            vec![route(listen, 1594, 6, 4)],
        );
        let rates = traffic.last_minute(listen).unwrap();
        assert_eq!(rates.window, Duration::from_secs(60));
        assert!((rates.requests_per_second - 10.0).abs() < 1e-9, "{rates:?}");
        assert!((rates.error_rate - 0.01).abs() < 1e-9, "{rates:?}");
        let p50 = rates.p50.unwrap();
        assert!((0.005..=0.01).contains(&p50), "{p50}");
        // A route the proxy no longer has is forgotten.
        traffic.record(t0 + Duration::from_secs(602), vec![]);
        assert_eq!(traffic.last_minute(listen), None);
    }
}
