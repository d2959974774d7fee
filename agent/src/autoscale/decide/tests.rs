use super::*;

fn policy(min: u32, max: u32, target: u32) -> Autoscale {
    Autoscale {
        min,
        max,
        target_in_flight: target,
        scale_up_after: Duration::from_secs(6),
        scale_down_after: Duration::from_secs(20),
    }
}

/// One sample a second over the last `secs` seconds before `now` (and at `now`).
fn steady(now: Instant, secs: u64, in_flight: u64, ready: u32, running: u32) -> Vec<Sample> {
    (0..=secs)
        .rev()
        .map(|ago| Sample {
            at: now - Duration::from_secs(ago),
            in_flight,
            ready,
            running,
        })
        .collect()
}

fn to(d: Decision) -> Option<u32> {
    match d {
        Decision::Stay => None,
        Decision::Scale { to, .. } => Some(to),
    }
}

#[test]
fn a_load_above_the_target_for_the_window_jumps_to_what_it_needs() {
    let a = policy(1, 4, 2);
    let now = Instant::now() + Duration::from_secs(100);
    // 7 in flight on one replica, target 2: ceil(7 / 2) = 4.
    let d = decide(&a, 1, &steady(now, 6, 7, 1, 1), now);
    assert_eq!(
        d,
        Decision::Scale {
            from: 1,
            to: 4,
            per_replica: 7.0,
            over: Duration::from_secs(6)
        }
    );
    // Never above max.
    assert_eq!(to(decide(&a, 1, &steady(now, 6, 40, 1, 1), now)), Some(4));
    // Just above the target: one more.
    assert_eq!(to(decide(&a, 2, &steady(now, 6, 5, 2, 2), now)), Some(3));
    assert_eq!(
        describe(&a, 1, 3, 6.24, Duration::from_secs(10)),
        "scaled 1 → 3: 6.2 requests in flight per replica over 10 s, target 2"
    );
}

#[test]
fn a_window_not_covered_yet_or_at_another_count_decides_nothing() {
    let a = policy(1, 4, 2);
    let now = Instant::now() + Duration::from_secs(100);
    // Only 4 s of samples: the window is 6 s.
    assert_eq!(decide(&a, 1, &steady(now, 4, 9, 1, 1), now), Decision::Stay);
    // The samples were taken at another count (before the last change).
    assert_eq!(decide(&a, 2, &steady(now, 6, 9, 1, 1), now), Decision::Stay);
    // Samples that stopped coming (the proxy did not answer) are not the load now.
    let old = steady(now - Duration::from_secs(30), 6, 9, 1, 1);
    assert_eq!(decide(&a, 1, &old, now), Decision::Stay);
    // At the target, not above it.
    assert_eq!(decide(&a, 1, &steady(now, 6, 2, 1, 1), now), Decision::Stay);
    // No samples at all.
    assert_eq!(decide(&a, 1, &[], now), Decision::Stay);
}

#[test]
fn a_short_burst_inside_the_window_is_averaged() {
    let a = policy(1, 4, 2);
    let now = Instant::now() + Duration::from_secs(100);
    let mut s = steady(now, 6, 0, 1, 1);
    s[6].in_flight = 10; // one sample of 10, six of 0: 1.4 on average.
    assert_eq!(decide(&a, 1, &s, now), Decision::Stay);
}

#[test]
fn down_one_at_a_time_only_when_one_less_stays_under_the_target() {
    let a = policy(1, 4, 2);
    let now = Instant::now() + Duration::from_secs(100);
    // 3 replicas, 3 in flight: with 2 that is 1.5 each, under 2: one goes.
    assert_eq!(to(decide(&a, 3, &steady(now, 20, 3, 3, 3), now)), Some(2));
    // Idle: still one at a time.
    assert_eq!(to(decide(&a, 3, &steady(now, 20, 0, 3, 3), now)), Some(2));
    // 2 replicas, 2 in flight: one less would be at the target, not under it.
    assert_eq!(
        decide(&a, 2, &steady(now, 20, 2, 2, 2), now),
        Decision::Stay
    );
    // The cool-down is longer: 10 s of quiet is not enough.
    assert_eq!(
        decide(&a, 3, &steady(now, 10, 0, 3, 3), now),
        Decision::Stay
    );
    // Never below the floor (min 0 runs one for now).
    assert_eq!(
        decide(&a, 1, &steady(now, 20, 0, 1, 1), now),
        Decision::Stay
    );
    assert_eq!(
        decide(&policy(0, 4, 2), 1, &steady(now, 20, 0, 1, 1), now),
        Decision::Stay
    );
}

#[test]
fn a_count_outside_the_range_moves_back_into_it() {
    let now = Instant::now();
    assert_eq!(to(decide(&policy(2, 4, 2), 1, &[], now)), Some(2));
    assert_eq!(to(decide(&policy(1, 2, 2), 3, &[], now)), Some(2));
    assert_eq!(
        describe(&policy(2, 4, 2), 1, 2, 0.0, Duration::ZERO),
        "scaled 1 → 2: replicas.min is 2"
    );
}

#[test]
fn the_window_keeps_what_the_longer_window_needs() {
    let now = Instant::now() + Duration::from_secs(100);
    let mut w = Window::default();
    for s in steady(now, 40, 1, 1, 1) {
        w.push(s, Duration::from_secs(20));
    }
    let kept = w.samples();
    assert_eq!(kept.len(), 22, "20 s and one period, both ends");
    w.clear();
    assert!(w.samples().is_empty());
}
