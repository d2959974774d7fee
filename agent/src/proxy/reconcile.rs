//! The agent's routes against the proxy's table: what to send so the proxy routes exactly
//! as the agent decided. A route that differs (to a release that stopped, say: a change the
//! agent gave up on and the proxy took late) is set again; a route the agent does not have
//! is removed (once the agent has taken over every deployment, so a route not re-decided
//! yet after an agent restart stays); an address whose last change may still be queued in
//! the proxy is sent again with a newer generation even when it looks right.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::table::RouteSpec;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// Route as the agent decided (numbered anew when sent).
    Set {
        route: RouteSpec,
        why: Why,
    },
    Remove {
        listen: SocketAddr,
        why: Why,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Why {
    /// The proxy has no route where the agent routes.
    Missing,
    /// The proxy routes otherwise: what it has.
    Differs(RouteSpec),
    /// A route the agent does not have.
    Stray(RouteSpec),
    /// The proxy may still take a change the agent gave up on: the decision again, newer.
    Unsure,
}

impl Why {
    /// Whether the proxy routed otherwise than decided (a bug the agent fixes: a warning).
    pub(super) fn is_a_difference(&self) -> bool {
        !matches!(self, Why::Unsure)
    }
}

/// What to send, in address order.
pub(super) fn plan(
    decided: &BTreeMap<SocketAddr, RouteSpec>,
    table: &[RouteSpec],
    unsure: &BTreeSet<SocketAddr>,
    remove_strays: bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let has = |listen: &SocketAddr| table.iter().find(|r| r.listen == *listen);
    for (listen, want) in decided {
        let why = match has(listen) {
            None => Some(Why::Missing),
            Some(r) if !r.routes_like(want) => Some(Why::Differs(r.clone())),
            Some(r) if unsure.contains(listen) || r.generation < want.generation => {
                Some(Why::Unsure)
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            steps.push(Step::Set {
                route: want.clone(),
                why,
            });
        }
    }
    for r in table.iter().filter(|r| !decided.contains_key(&r.listen)) {
        if remove_strays || unsure.contains(&r.listen) {
            steps.push(Step::Remove {
                listen: r.listen,
                why: Why::Stray(r.clone()),
            });
        }
    }
    for listen in unsure {
        if !decided.contains_key(listen) && has(listen).is_none() {
            steps.push(Step::Remove {
                listen: *listen,
                why: Why::Unsure,
            });
        }
    }
    steps
}

/// A route's backends in a few words: "release 5 at 127.0.0.1:41234, 127.0.0.1:41235".
pub(super) fn describe(r: &RouteSpec) -> String {
    let Some(first) = r.backends.first() else {
        return "no backend".into();
    };
    let at: Vec<String> = r.backends.iter().map(|b| b.addr.to_string()).collect();
    format!("release {} at {}", first.release, at.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::BackendSpec;
    use crate::spec::ProxyMode;

    fn route(port: u16, backend: u16, release: u32, generation: u64) -> RouteSpec {
        RouteSpec {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            mode: ProxyMode::Http,
            backends: vec![BackendSpec {
                addr: SocketAddr::from(([127, 0, 0, 1], backend)),
                release,
                owner: None,
            }],
            hold_timeout_ms: 10_000,
            name: "web".into(),
            generation,
            connections: Default::default(),
            sleeping: None,
        }
    }

    fn decided(routes: &[RouteSpec]) -> BTreeMap<SocketAddr, RouteSpec> {
        routes.iter().map(|r| (r.listen, r.clone())).collect()
    }

    #[test]
    fn a_table_as_decided_needs_nothing() {
        let d = decided(&[route(8000, 4001, 5, 7)]);
        let table = [route(8000, 4001, 5, 7)];
        assert!(plan(&d, &table, &BTreeSet::new(), true).is_empty());
    }

    #[test]
    fn a_route_to_the_release_the_agent_gave_up_on_is_set_again() {
        // The switch to release 6 (generation 8) timed out; the proxy took it late.
        let d = decided(&[route(8000, 4001, 5, 7)]);
        let table = [route(8000, 4002, 6, 8)];
        let steps = plan(&d, &table, &BTreeSet::new(), false);
        assert_eq!(
            steps,
            [Step::Set {
                route: route(8000, 4001, 5, 7),
                why: Why::Differs(route(8000, 4002, 6, 8)),
            }]
        );
        assert_eq!(describe(&table[0]), "release 6 at 127.0.0.1:4002");
    }

    #[test]
    fn missing_routes_are_set_and_strays_removed_once_every_deployment_is_taken_over() {
        let d = decided(&[route(8000, 4001, 5, 7)]);
        let table = [route(9000, 4100, 2, 3)];
        let before = plan(&d, &table, &BTreeSet::new(), false);
        assert_eq!(before.len(), 1, "{before:?}");
        assert!(matches!(
            before[0],
            Step::Set {
                why: Why::Missing,
                ..
            }
        ));
        let after = plan(&d, &table, &BTreeSet::new(), true);
        assert_eq!(after.len(), 2);
        assert!(matches!(
            &after[1],
            Step::Remove { listen, why: Why::Stray(_) } if listen.port() == 9000
        ));
    }

    #[test]
    fn an_unsure_address_is_sent_again_even_when_it_looks_right() {
        let d = decided(&[route(8000, 4001, 5, 7)]);
        let table = [route(8000, 4001, 5, 7)];
        let unsure: BTreeSet<_> = [
            d.keys().next().copied().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        ]
        .into();
        let steps = plan(&d, &table, &unsure, false);
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(matches!(
            steps[0],
            Step::Set {
                why: Why::Unsure,
                ..
            }
        ));
        assert!(matches!(
            steps[1],
            Step::Remove {
                why: Why::Unsure,
                ..
            }
        ));
        assert!(!Why::Unsure.is_a_difference());
        // A proxy behind in generation (a change it never took): numbered anew too.
        let older = [route(8000, 4001, 5, 6)];
        assert!(matches!(
            plan(&d, &older, &BTreeSet::new(), false)[..],
            [Step::Set {
                why: Why::Unsure,
                ..
            }]
        ));
    }
}
