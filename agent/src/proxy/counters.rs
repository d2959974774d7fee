//! What the proxy counts for each route and each backend: finished requests by status
//! class, a latency histogram (time to the response's head), bytes each way, connections
//! (TCP mode). Counters only grow while the proxy runs; [`Counts`] are their values at one
//! moment, and the difference of two (a window of time) gives rates and percentiles.
//!
//! Each worker thread ([`super::workers`]) counts in a shard of its own (a cache line
//! apart): counting a request moves no cache line from core to core. Reading sums them.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in seconds (the last bucket is everything above).
pub(crate) const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// Shards per counter: the number of workers (1 until they start).
static SHARDS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The shard this thread counts in: its worker's number.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// `n` workers count from now on (before any route is made).
pub(crate) fn set_shards(n: usize) {
    SHARDS.store(n.max(1), Ordering::Relaxed);
}

/// This thread is worker `i`.
pub(crate) fn enter_shard(i: usize) {
    SHARD.with(|s| s.set(i));
}

/// This thread's worker number (0 outside the workers).
pub(crate) fn current_shard() -> usize {
    SHARD.with(Cell::get)
}

fn shards<T: Default>() -> Box<[T]> {
    (0..SHARDS.load(Ordering::Relaxed))
        .map(|_| T::default())
        .collect()
}

fn mine<T>(shards: &[T]) -> &T {
    let i = SHARD.with(Cell::get);
    &shards[i % shards.len()]
}

#[derive(Debug)]
pub(crate) struct Counters {
    shards: Box<[Shard]>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters { shards: shards() }
    }
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    by_class: [AtomicU64; 5],
    latency: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections: AtomicU64,
}

impl Counters {
    /// A finished request: its status and how long its response's head took.
    pub(crate) fn request(&self, status: u16, latency: Duration) {
        let shard = mine(&self.shards);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        shard.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS - 1);
        shard.latency[bucket].fetch_add(1, Ordering::Relaxed);
        shard.latency_sum_us.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn bytes(&self, to_app: u64, from_app: u64) {
        let shard = mine(&self.shards);
        if to_app > 0 {
            shard.bytes_in.fetch_add(to_app, Ordering::Relaxed);
        }
        if from_app > 0 {
            shard.bytes_out.fetch_add(from_app, Ordering::Relaxed);
        }
    }

    /// A finished TCP connection.
    pub(crate) fn connection(&self) {
        mine(&self.shards)
            .connections
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> Counts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut total = Counts {
            latency: vec![0; BUCKETS],
            ..Default::default()
        };
        for s in self.shards.iter() {
            total.add(&Counts {
                by_class: std::array::from_fn(|i| get(&s.by_class[i])),
                latency: s.latency.iter().map(get).collect(),
                latency_sum_us: get(&s.latency_sum_us),
                bytes_in: get(&s.bytes_in),
                bytes_out: get(&s.bytes_out),
                connections: get(&s.connections),
            });
        }
        total
    }
}

/// A number that goes up and down (requests in flight), sharded like [`Counters`].
#[derive(Debug)]
pub(crate) struct Gauge {
    shards: Box<[GaugeShard]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct GaugeShard(AtomicI64);

impl Default for Gauge {
    fn default() -> Self {
        Gauge { shards: shards() }
    }
}

impl Gauge {
    pub(crate) fn add(&self, n: i64) {
        mine(&self.shards).0.fetch_add(n, Ordering::SeqCst);
    }

    pub(crate) fn get(&self) -> u64 {
        let sum: i64 = self.shards.iter().map(|s| s.0.load(Ordering::SeqCst)).sum();
        u64::try_from(sum).unwrap_or(0)
    }
}

/// Counter values at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    /// Finished requests by status class: 1xx..5xx (index 0..4).
    pub by_class: [u64; 5],
    /// Requests per latency bucket (see [`LATENCY_BOUNDS`]; one more for the rest).
    #[serde(default)]
    pub latency: Vec<u64>,
    #[serde(default)]
    pub latency_sum_us: u64,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub connections: u64,
}

impl Counts {
    pub(crate) fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    pub(crate) fn add(&mut self, other: &Counts) {
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
        self.latency_sum_us += other.latency_sum_us;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.connections += other.connections;
    }

    /// What was counted since `earlier`. Counters that went down (the proxy started
    /// again) count from zero.
    pub(crate) fn since(&self, earlier: &Counts) -> Counts {
        if self.requests() < earlier.requests() || self.connections < earlier.connections {
            return self.clone();
        }
        let d = |a: u64, b: u64| a.saturating_sub(b);
        Counts {
            by_class: std::array::from_fn(|i| d(self.by_class[i], earlier.by_class[i])),
            latency: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, a)| d(*a, earlier.latency.get(i).copied().unwrap_or(0)))
                .collect(),
            latency_sum_us: d(self.latency_sum_us, earlier.latency_sum_us),
            bytes_in: d(self.bytes_in, earlier.bytes_in),
            bytes_out: d(self.bytes_out, earlier.bytes_out),
            connections: d(self.connections, earlier.connections),
        }
    }

    /// The latency (seconds) below which a fraction `q` of the requests were answered,
    /// interpolated within its bucket (as Prometheus' `histogram_quantile` does). `None`
    /// without requests.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, n) in self.latency.iter().enumerate() {
            if (below + n) as f64 >= rank && *n > 0 {
                let lower = if i == 0 { 0.0 } else { LATENCY_BOUNDS[i - 1] };
                let Some(upper) = LATENCY_BOUNDS.get(i).copied() else {
                    // Above the last bound: all that can be said.
                    return Some(lower);
                };
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        LATENCY_BOUNDS.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class_and_latency() {
        let c = Counters::default();
        c.request(200, Duration::from_micros(300));
        c.request(201, Duration::from_millis(3));
        c.request(503, Duration::from_secs(30));
        let n = c.counts();
        assert_eq!(n.by_class, [0, 2, 0, 0, 1]);
        assert_eq!(n.latency.len(), 15);
        assert_eq!((n.latency[0], n.latency[3], n.latency[14]), (1, 1, 1));
        assert_eq!(n.requests(), 3);
    }

    #[test]
    fn percentiles_come_from_the_window_and_survive_a_restarted_proxy() {
        let c = Counters::default();
        for _ in 0..90 {
            c.request(200, Duration::from_millis(2));
        }
        let before = c.counts();
        for _ in 0..99 {
            c.request(200, Duration::from_millis(20));
        }
        c.request(500, Duration::from_millis(400));
        let window = c.counts().since(&before);
        assert_eq!(window.requests(), 100);
        assert_eq!(window.by_class[4], 1);
        let p50 = window.quantile(0.5).unwrap();
        assert!((0.01..=0.025).contains(&p50), "{p50}");
        let p99 = window.quantile(0.99).unwrap();
        assert!(p99 <= 0.025, "{p99}");
        assert!(window.quantile(1.0).unwrap() > 0.25);
        // A restarted proxy counts from zero again.
        let fresh = Counters::default();
        fresh.request(200, Duration::from_millis(1));
        assert_eq!(fresh.counts().since(&c.counts()).requests(), 1);
        assert_eq!(Counts::default().quantile(0.5), None);
    }
}
