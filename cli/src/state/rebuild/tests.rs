use std::collections::BTreeMap;

use deployctl_proto::v1 as pb;

use super::{rebuild, Report};
use crate::state::{AgentResult, DeploymentState, HistoryEntry, State, REBUILT, REFRESHED};

const A: &str = "http://10.0.0.1:7000";
const B: &str = "http://10.0.0.2:7000";
const C: &str = "http://10.0.0.3:7000";

fn kept(number: u32, commit: &str, result: &str) -> pb::KeptRelease {
    pb::KeptRelease {
        number,
        git_ref: format!("v{number}"),
        commit: commit.to_string(),
        packages_hash: format!("p{number}"),
        deployed_at: 1000 + number as i64,
        result: result.to_string(),
        spec: Some(pb::DeploymentSpec {
            name: "iris".into(),
            repo: "https://example.com/iris.git".into(),
            git_ref: format!("v{number}"),
            command: "python app.py".into(),
            owner: "alice".into(),
            port: 8000,
            // What the agent fills in where a declaration leaves them out.
            health_timeout_ms: 120_000,
            health_interval_ms: 10_000,
            kill_timeout_ms: 10_000,
            restart: "on-failure".into(),
            ..Default::default()
        }),
    }
}

/// An agent's status running release `current` of `releases`.
fn status(current: u32, releases: Vec<pb::KeptRelease>) -> pb::DeploymentStatus {
    let run = releases.iter().find(|r| r.number == current).cloned();
    let run = run.unwrap_or_default();
    pb::DeploymentStatus {
        name: "iris".into(),
        owner: "alice".into(),
        state: "healthy".into(),
        release: current,
        git_ref: run.git_ref.clone(),
        commit: run.commit.clone(),
        spec: run.spec.clone(),
        recent_deploys: releases
            .iter()
            .map(|r| pb::DeployRecord {
                deploy_id: format!("id{}", r.number),
                release: r.number,
                ..Default::default()
            })
            .collect(),
        releases,
        ..Default::default()
    }
}

type Agents<'a> = [(&'a str, Option<&'a pb::DeploymentStatus>)];

fn reports_of<'a>(agents: &Agents<'a>) -> Vec<Report<'a>> {
    let report = |(agent, status): &(&'a str, _)| Report {
        agent,
        status: *status,
    };
    agents.iter().map(report).collect()
}

/// iris rebuilt in env prod from `agents` (in the env's order).
fn run(st: &mut State, declared: Option<&str>, agents: &Agents<'_>) -> Option<super::Rebuilt> {
    rebuild(st, "iris", "prod", declared, &reports_of(agents), 5)
}

fn three() -> Vec<pb::KeptRelease> {
    vec![
        kept(1, "c1", "ok"),
        kept(2, "c2", "ok"),
        kept(3, "c3", "ok"),
    ]
}

fn numbers(d: &DeploymentState) -> Vec<u32> {
    d.history.iter().map(|h| h.number).collect()
}

#[test]
fn a_lost_state_gets_every_release_the_agents_keep() {
    let (a, b) = (status(3, three()), status(3, three()));
    let reports = [(A, Some(&a)), (B, Some(&b))];
    let mut st = State::default();
    let r = run(&mut st, Some("prod"), &reports).expect("rebuilt");
    assert!(r.added);
    assert_eq!(r.lines, ["iris: 3 releases from 2 agents, current 3"]);
    let d = &st.deployments["iris"];
    assert_eq!((d.env.as_str(), d.owner.as_str()), ("prod", "alice"));
    assert_eq!(numbers(d), [1, 2, 3]);
    assert_eq!(d.declaration.git_ref.as_deref(), Some("v3"));
    assert_eq!(d.declaration.env.as_deref(), Some("prod"));
    assert_eq!(d.declaration.owner.as_deref(), Some("alice"));
    let defaults = (
        &d.declaration.restart,
        &d.declaration.health.startup_timeout,
    );
    assert_eq!(defaults, (&None, &None), "as a person would write it");
    let h = &d.history[1];
    assert_eq!(
        (h.commit.as_str(), h.result.as_str(), h.time),
        ("c2", "ok", 1002)
    );
    assert_eq!(h.note, REBUILT);
    assert_eq!(h.id, "id2", "the deploy's id, as the agents keep it");
    assert_eq!(h.declaration.git_ref.as_deref(), Some("v2"));
    assert_eq!(h.agents[B].release, 2);
    assert_eq!(d.instances[A].release, 3);
}

#[test]
fn where_agents_disagree_most_win_then_the_env_order_and_it_is_said() {
    let mut other = three();
    other[1].commit = "x2".into();
    let (a, b, c) = (status(3, other), status(3, three()), status(3, three()));
    let reports = [(A, Some(&a)), (B, Some(&b)), (C, Some(&c))];
    let mut st = State::default();
    let r = run(&mut st, None, &reports).expect("rebuilt");
    let h = &st.deployments["iris"].history[1];
    assert_eq!(h.commit, "c2");
    assert_eq!(h.agents.keys().collect::<Vec<_>>(), [B, C]);
    assert!(
        r.lines[1].contains("release 2: the agents disagree"),
        "{r:?}"
    );
    assert!(r.lines[1].contains(&format!("{A} has x2 (v2)")), "{r:?}");

    // As many each way: the first agent in the env's order.
    let mut other = three();
    other[0].commit = "x1".into();
    let (a, b) = (status(3, other), status(3, three()));
    let reports = [(A, Some(&a)), (B, Some(&b))];
    let mut st = State::default();
    run(&mut st, None, &reports).expect("rebuilt");
    assert_eq!(st.deployments["iris"].history[0].commit, "x1");
}

#[test]
fn a_failure_on_one_agent_is_the_release_s_result() {
    let mut failed = three();
    failed[2].result = "failed at health: refused".into();
    let (a, b) = (status(3, three()), status(2, failed));
    let reports = [(A, Some(&a)), (B, Some(&b))];
    let mut st = State::default();
    let r = run(&mut st, None, &reports).expect("rebuilt");
    assert_eq!(
        st.deployments["iris"].history[2].result,
        "failed at health: refused"
    );
    assert_eq!(r.current, Some(2));
}

fn deployed(number: u32, commit: &str, release: u32) -> HistoryEntry {
    HistoryEntry {
        number,
        commit: commit.to_string(),
        result: "ok".into(),
        agents: BTreeMap::from([(
            A.to_string(),
            AgentResult {
                release,
                result: "ok".into(),
            },
        )]),
        frozen: vec!["numpy==2.0".into()],
        ..Default::default()
    }
}

#[test]
fn what_the_state_has_is_kept_and_only_what_it_lacks_is_added() {
    let mut st = State::default();
    let before = DeploymentState {
        env: "prod".into(),
        owner: "alice".into(),
        history: vec![deployed(1, "c1", 1), deployed(2, "c2", 2)],
        ..Default::default()
    };
    st.deployments.insert("iris".into(), before.clone());
    let a = status(3, three());
    let reports = [(A, Some(&a))];
    let r = run(&mut st, None, &reports).expect("rebuilt");
    let d = &st.deployments["iris"];
    assert_eq!(numbers(d), [1, 2, 3]);
    assert_eq!(d.history[..2], before.history[..]);
    assert_eq!(
        d.declaration.git_ref.as_deref(),
        Some("v3"),
        "the current one's"
    );
    assert_eq!(
        r.lines,
        ["iris: 1 release added to its history (#3) from 1 agent, now 3, current 3"]
    );
    // Again: nothing to add.
    let r = run(&mut st, None, &reports).expect("rebuilt");
    assert!(r.numbers.is_empty());
    assert!(
        r.lines[0].contains("the state has every release its 1 agent keep"),
        "{r:?}"
    );
}

#[test]
fn a_number_the_state_gives_another_deploy_is_left_out_and_said() {
    let mut st = State::default();
    let mut third = deployed(3, "z3", 0);
    third.agents.clear();
    let mine = DeploymentState {
        env: "prod".into(),
        history: vec![deployed(1, "c1", 1), deployed(2, "c2", 2), third.clone()],
        ..Default::default()
    };
    st.deployments.insert("iris".into(), mine);
    let a = status(3, three());
    let reports = [(A, Some(&a))];
    let r = run(&mut st, None, &reports).expect("rebuilt");
    assert_eq!(st.deployments["iris"].history[2], third);
    assert!(
        r.lines[1].contains("release 3 (v3 c3) is not in the state"),
        "{r:?}"
    );
    assert!(r.lines[1].contains("left out"), "{r:?}");
}

#[test]
fn an_agent_that_keeps_no_releases_gives_the_one_it_runs() {
    let mut a = status(3, three());
    a.releases.clear();
    let reports = [(A, Some(&a)), (B, None)];
    let mut st = State::default();
    st.deployments.insert(
        "iris".into(),
        DeploymentState {
            env: "prod".into(),
            instances: BTreeMap::from([(B.to_string(), Default::default())]),
            ..Default::default()
        },
    );
    let r = run(&mut st, None, &reports).expect("rebuilt");
    let d = &st.deployments["iris"];
    assert_eq!(numbers(d), [3]);
    assert_eq!(d.history[0].note, REFRESHED);
    assert!(!d.instances.contains_key(B), "B does not run it");
    assert!(
        r.lines[1].contains("reports only the release it runs"),
        "{r:?}"
    );
    // No agent has it: nothing to do.
    let none = [(A, None)];
    assert!(rebuild(&mut st, "other", "prod", None, &reports_of(&none), 5).is_none());
}
