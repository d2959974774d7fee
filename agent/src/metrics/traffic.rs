//! The node proxy's counts in `/metrics`: requests by status class, the latency histogram
//! and in-flight requests per deployment and release; bytes and requests no instance took
//! per deployment. Set from the proxy's last counts at each scrape.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::proxy::{Counts, LATENCY_BOUNDS};

/// One deployment's traffic through the proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Served {
    pub deployment: String,
    /// Per release (serving and draining instances added up): its counts and in-flight.
    pub releases: Vec<(u32, Counts, u64)>,
    pub totals: Counts,
    pub unavailable: u64,
}

#[derive(Debug, Default)]
pub(super) struct TrafficCollector {
    pub(super) served: Mutex<Vec<Served>>,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Collector for TrafficCollector {
    /// The node proxy's families, each from the same sample. Long on purpose: one family
    /// after another (requests, durations, in flight, connections, bytes, unavailable).
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        let release_labels = |s: &Served, release: u32| {
            vec![
                ("deployment", s.deployment.clone()),
                ("release", release.to_string()),
            ]
        };

        let mut family = encoder.encode_descriptor(
            "proxy_requests",
            "Requests the node proxy answered, by deployment, release and status class",
            None,
            MetricType::Counter,
        )?;
        for s in served.iter() {
            for (release, counts, _) in &s.releases {
                for (class, n) in CLASSES.iter().zip(counts.by_class) {
                    let mut labels = release_labels(s, *release);
                    labels.push(("class", (*class).to_string()));
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "proxy_request_duration_seconds",
            "Time from a request's arrival at the node proxy to its response's head",
            None,
            MetricType::Histogram,
        )?;
        for s in served.iter() {
            for (release, counts, _) in &s.releases {
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .copied()
                    .chain([f64::MAX])
                    .zip(counts.latency.iter().copied().chain(std::iter::repeat(0)))
                    .collect();
                family
                    .encode_family(&release_labels(s, *release))?
                    .encode_histogram::<NoLabelSet>(
                        counts.latency_sum_us as f64 / 1e6,
                        counts.latency.iter().sum(),
                        &buckets,
                        None,
                    )?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "proxy_in_flight_requests",
            "Requests (or TCP connections) the node proxy has open to each release",
            None,
            MetricType::Gauge,
        )?;
        for s in served.iter() {
            for (release, _, in_flight) in &s.releases {
                family
                    .encode_family(&release_labels(s, *release))?
                    .encode_gauge(&(i64::try_from(*in_flight).unwrap_or(i64::MAX)))?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "proxy_connections",
            "TCP connections the node proxy passed to each release (proxy: tcp)",
            None,
            MetricType::Counter,
        )?;
        for s in served.iter() {
            for (release, counts, _) in &s.releases {
                family
                    .encode_family(&release_labels(s, *release))?
                    .encode_counter::<NoLabelSet, _, u64>(&counts.connections, None)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "proxy_bytes",
            "Body bytes through the node proxy (direction: to_app or from_app)",
            None,
            MetricType::Counter,
        )?;
        for s in served.iter() {
            for (direction, n) in [
                ("to_app", s.totals.bytes_in),
                ("from_app", s.totals.bytes_out),
            ] {
                let labels = [
                    ("deployment", s.deployment.as_str()),
                    ("direction", direction),
                ];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "proxy_unavailable",
            "Requests or connections no instance took within the hold timeout (HTTP: answered 503)",
            None,
            MetricType::Counter,
        )?;
        for s in served.iter() {
            family
                .encode_family(&[("deployment", s.deployment.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&s.unavailable, None)?;
        }
        Ok(())
    }
}
