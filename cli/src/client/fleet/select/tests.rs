//! Selectors and placement.

use super::*;

const G: u64 = 1 << 30;

fn agent(address: &str, zone: &str, committed: u64, gpus_free: u32) -> Record {
    Record {
        address: address.into(),
        labels: [("zone".to_string(), zone.to_string())].into(),
        cpus: 8,
        memory_total_bytes: 16 * G,
        memory_free_bytes: 10 * G,
        memory_committed_bytes: committed,
        overcommit: 1.0,
        gpus_total: 2,
        gpus_free,
        ..Default::default()
    }
}

#[test]
fn labels_and_capacities_select() {
    let a = agent("http://a:1", "a", 0, 1);
    let b = agent("http://b:1", "b", 12 * G, 0);
    let s = Selector::parse("zone=a,gpus>=1").unwrap();
    assert!(s.check(&a).is_ok());
    let why = s.check(&b).unwrap_err();
    assert!(why.contains("zone=a") && why.contains("zone=b"), "{why}");
    let mem = Selector::parse("memory>=8G").unwrap();
    assert!(mem.check(&a).is_ok());
    let why = mem.check(&b).unwrap_err();
    assert!(why.contains("memory>=8G") && why.contains("4.0G"), "{why}");
    assert!(Selector::parse("zone!=b").unwrap().check(&a).is_ok());
    assert!(Selector::parse("").unwrap().check(&b).is_ok());
    assert!(Selector::parse("rack=r1").unwrap().check(&a).is_err());
}

#[test]
fn bad_selectors_name_the_term() {
    for (bad, says) in [
        ("zone", "not a term"),
        ("zone>=a", "label"),
        ("memory>=lots", "not a size"),
        ("gpus>=one", "not a number"),
        ("=a", "not a term"),
    ] {
        let e = Selector::parse(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn count_picks_the_most_room_and_keeps_where_it_runs() {
    let agents = vec![
        agent("http://a:1", "a", 8 * G, 2),
        agent("http://b:1", "a", 2 * G, 0),
        agent("http://c:1", "a", 15 * G, 2),
    ];
    let need = Need {
        memory: 4 * G,
        gpus: 0,
    };
    let picked = |c: &[Choice]| -> Vec<String> {
        c.iter()
            .filter(|c| c.picked)
            .map(|c| c.address.clone())
            .collect()
    };
    let c = place(&agents, 1, need, &[]);
    assert_eq!(picked(&c), ["http://b:1"]);
    let full = c.iter().find(|c| c.address == "http://c:1").unwrap();
    assert!(full.why.contains("no room"), "{}", full.why);
    assert_eq!(
        picked(&place(&agents, 2, need, &[])),
        ["http://b:1", "http://a:1"]
    );
    // A redeploy stays where it runs.
    let c = place(&agents, 1, need, &["http://a:1".to_string()]);
    assert_eq!(picked(&c), ["http://a:1"]);
    assert!(c[0].why.contains("already"), "{}", c[0].why);
    // GPUs first when it asks for them.
    let gpu = Need { memory: 0, gpus: 1 };
    assert_eq!(picked(&place(&agents, 1, gpu, &[])), ["http://a:1"]);
    // As many as there are, asking nothing: every one.
    assert_eq!(picked(&place(&agents, 3, Need::default(), &[])).len(), 3);
}
