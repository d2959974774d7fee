//! Picking backends, draining, and what a route keeps across changes.

use super::*;

fn spec(backends: &[(u16, u32)]) -> RouteSpec {
    RouteSpec {
        listen: "127.0.0.1:8000".parse().unwrap(),
        mode: ProxyMode::Http,
        backends: backends
            .iter()
            .map(|(p, r)| BackendSpec {
                addr: SocketAddr::from(([127, 0, 0, 1], *p)),
                release: *r,
                owner: None,
            })
            .collect(),
        hold_timeout_ms: 10_000,
        name: String::new(),
        generation: 0,
        connections: Default::default(),
        sleeping: None,
    }
}

#[test]
fn the_backend_with_the_fewest_requests_in_flight_is_picked() {
    let route = Route::new(&spec(&[(1001, 1), (1002, 1), (1003, 1)]));
    let a = route.pick(&[]).unwrap();
    let _a1 = a.begin();
    let _a2 = a.begin();
    let b = route.pick(&[]).unwrap();
    assert_ne!(a.spec.addr, b.spec.addr);
    let _b1 = b.begin();
    let c = route.pick(&[]).unwrap();
    assert_ne!(c.spec.addr, a.spec.addr);
    assert_ne!(c.spec.addr, b.spec.addr);
    assert!(route
        .pick(&[a.spec.addr, b.spec.addr, c.spec.addr])
        .is_none());
}

#[test]
fn idle_backends_take_turns() {
    let route = Route::new(&spec(&[(1001, 1), (1002, 1), (1003, 1)]));
    let picked: Vec<u16> = (0..6)
        .map(|_| route.pick(&[]).unwrap().spec.addr.port())
        .collect();
    assert_eq!(picked, [1001, 1002, 1003, 1001, 1002, 1003]);
}

#[test]
fn a_replaced_backend_drains_until_its_last_request_ends() {
    let route = Route::new(&spec(&[(1001, 1)]));
    let old = route.pick(&[]).unwrap();
    let request = old.begin();
    route.set(&spec(&[(1002, 2)]));
    assert_eq!(
        route.pick(&[]).unwrap().spec.release,
        2,
        "new requests go to 2"
    );
    let stats = route.stats();
    assert_eq!(stats.serving.len(), 1);
    assert_eq!((stats.draining.len(), stats.draining[0].in_flight), (1, 1));
    drop(request);
    assert!(route.stats().draining.is_empty(), "drained");
}

#[test]
fn a_backend_that_stays_keeps_its_counts() {
    let route = Route::new(&spec(&[(1001, 1)]));
    let b = route.pick(&[]).unwrap();
    b.finished(200, Duration::from_millis(1));
    route.set(&spec(&[(1001, 1), (1002, 1)]));
    route.count_unavailable(Some(Duration::from_secs(10)));
    let stats = route.stats();
    assert_eq!(stats.serving[0].counts.by_class[1], 1);
    assert_eq!(
        stats.totals.by_class,
        [0, 1, 0, 0, 1],
        "the route counts every answer"
    );
    assert_eq!(route.spec(), spec(&[(1001, 1), (1002, 1)]));
}
