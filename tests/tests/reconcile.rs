//! History after a lost deploy stream (issue 22, item 5): the client records "unknown (lost
//! the connection)", never a guess, and the next command that reaches the agent records the
//! outcome the agent kept under the deploy's id; `rollback` never skips a release that went
//! live there, nor picks one that failed there, nor guesses while one is not known.

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";
const UNKNOWN: &str = "unknown (lost the connection)";

fn history(project: &Project, name: &str) -> Vec<Value> {
    let out = project.deployctl(&["history", name, "--output", "json"]);
    out.ok();
    out.json()["releases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The pid of release `release`'s first process once its deploy waits in the health step
/// (from the deploy log: "ok  start: pid N", then "... health: ...").
fn in_health(agent: &Agent, release: u32) -> Option<u32> {
    let log = std::fs::read_to_string(agent.deployment_dir("app").join("logs/deploy.log")).ok()?;
    let (_, this) = log.rsplit_once(&format!("into release {release}"))?;
    let (started, _) = this.split_once("... health:")?;
    started
        .lines()
        .find_map(|l| l.strip_prefix("ok  start: pid "))
        .and_then(|pid| pid.split_whitespace().next()?.parse().ok())
}

fn served(agent: &Agent) -> Value {
    wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(20))
}

/// Releases 1 (v1) and 2 (v2) of `app` deployed, and v3 committed: its commit.
fn two_releases(project: &Project, repo: &GitRepo) -> String {
    repo.commit_app("one", Some("v1"));
    project
        .run_app(ENV, "app", &repo.url(), "v1", &["--port", "8000"])
        .ok();
    repo.commit_app("two", Some("v2"));
    project.deployctl(&["run", "app", "--ref", "v2"]).ok();
    repo.commit_app("three", Some("v3"))
}

#[test]
fn an_agent_killed_in_a_deploys_health_step_has_the_last_word_and_rollback_follows_it() {
    let ip = loopback();
    let mut agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let v3 = two_releases(&project, &repo);

    // v3 takes a minute to listen: its deploy waits in the health step, where the agent is
    // killed.
    let mut deploying_pid = None;
    let run = std::thread::scope(|s| {
        let run = s.spawn(|| {
            project.deployctl(&[
                "run",
                "app",
                "--ref",
                "v3",
                "--env-var",
                "APP_SLOW_START=60",
            ])
        });
        let in_health = wait_until(Duration::from_secs(60), || {
            deploying_pid = in_health(&agent, 3);
            deploying_pid.is_some()
        });
        assert!(in_health, "the deploy never reached its health step");
        agent.kill9();
        run.join().unwrap()
    });
    run.expect_code(1)
        .mentions("how the deploy ends there is not known");

    // The agent is away: not known, and said so (not "failed").
    let h = history(&project, "app");
    assert_eq!(h.len(), 3, "{h:#?}");
    assert_eq!(h[2]["result"], UNKNOWN, "{h:#?}");
    assert_eq!(h[2]["ref"], "v3");
    project
        .deployctl(&["rollback", "app"])
        .expect_code(1)
        .mentions("how deploy #3 of app ended")
        .mentions("is not known");

    // Back: the agent stopped what the interrupted deploy had started, and its record
    // says how the deploy ended. That is the history now.
    agent.restart();
    let pid = deploying_pid.unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(30), || !pid_alive(pid)),
        "the interrupted deploy's process {pid} still runs"
    );
    project
        .deployctl(&["history", "app"])
        .ok()
        .mentions("the agents' records of deploys whose result was not known")
        .mentions("#3 on")
        .mentions("failed at health: interrupted: the agent stopped during the deploy");
    let h = history(&project, "app");
    let third = &h[2];
    assert_eq!(
        third["result"], "failed at health: interrupted: the agent stopped during the deploy",
        "{third:#}"
    );
    assert_eq!(third["ref"], "v3");
    assert_eq!(third["commit"], v3.as_str());
    assert_eq!(h[1]["current"], true, "release 2 still runs");
    let (_, dep) = project.status_json("app");
    assert_eq!(dep["instances"][0]["release"], 2, "{dep:#}");

    // The release before the current one (2) is 1.
    project
        .deployctl(&["rollback", "app"])
        .ok()
        .mentions("back to release 1");
    assert_eq!(served(&agent)["marker"], "one");
}

#[test]
fn a_deploy_that_went_live_after_the_stream_broke_is_rolled_back_from() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    // deployctl reaches the agent through a relay that can drop every connection.
    let relay = Relay::start(&ip, agent.grpc);
    let project = Project::new();
    project
        .deployctl(&[
            "declare",
            "env",
            "agent",
            ENV,
            "--address",
            &relay.address(),
        ])
        .ok();
    project.write(".deployctl.yaml", &format!("core:\n  default_env: {ENV}\n"));
    let repo = GitRepo::new();
    let v3 = two_releases(&project, &repo);

    // The network drops the stream while v3 waits in its health step; the agent goes on.
    let run = std::thread::scope(|s| {
        let run = s.spawn(|| {
            project.deployctl(&[
                "run",
                "app",
                "--ref",
                "v3",
                "--env-var",
                "APP_SLOW_START=15",
            ])
        });
        let in_health = wait_until(Duration::from_secs(60), || in_health(&agent, 3).is_some());
        assert!(in_health, "the deploy never reached its health step");
        relay.cut();
        run.join().unwrap()
    });
    run.expect_code(1)
        .mentions("lost the connection")
        .mentions("how the deploy ends there is not known");
    // While it still deploys, rollback does not guess which release is current.
    project
        .deployctl(&["rollback", "app"])
        .expect_code(1)
        .mentions("is not known");

    // It went live there: the agent's outcome wins.
    let live = wait_until(Duration::from_secs(60), || {
        agent.record("app").unwrap_or_default()["current"] == 3
    });
    assert!(live, "release 3 never went live");
    let h = history(&project, "app");
    let third = &h[2];
    assert_eq!(third["result"], "ok", "{h:#?}");
    assert_eq!(third["commit"], v3.as_str());
    assert_eq!(third["agents"][relay.address()]["release"], 3, "{third:#}");
    assert_eq!(third["current"], true);

    // So the release before the current one is 2, not 1.
    project
        .deployctl(&["rollback", "app"])
        .ok()
        .mentions("back to release 2");
    assert_eq!(served(&agent)["marker"], "two");
}
