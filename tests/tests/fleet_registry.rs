//! Agents that announce themselves in a real etcd (`register`, `labels`), and fleet envs
//! that find them there: selected by label, `--count 1` placed on the agent with the most
//! room, `plan` saying why, `nodes` and `status` on the fleet; a killed agent leaves the
//! registry within its lease's TTL, a stopped one at once.

use std::time::{Duration, Instant};

use deployctl_e2e::*;
use serde_json::Value;

/// An agent registered in `etcd` with `labels` (TOML inline table) and lease TTL `ttl`.
fn registered(etcd: &Etcd, labels: &str, ttl: &str) -> Agent {
    let config = format!(
        "register = \"{}\"\nlabels = {labels}\nregister_ttl = \"{ttl}\"\n",
        etcd.uri("e2e-fleet")
    );
    Agent::start_with(&loopback(), &config, &[])
}

/// The agents `nodes --env ENV` lists (exit code aside: a dead agent may be listed).
fn nodes(project: &Project, env: &str) -> Vec<String> {
    let out = project.deployctl(&["nodes", "--env", env, "--output", "json"]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    v["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["agent"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `nodes --env ENV` until it lists exactly `want` (sorted), within `deadline`.
fn wait_for_nodes(project: &Project, env: &str, want: &[String], deadline: Duration) -> bool {
    let mut want = want.to_vec();
    want.sort();
    wait_until(deadline, || {
        let mut have = nodes(project, env);
        have.sort();
        have == want
    })
}

/// `plan NAME --env one --output json`'s fleet part, for a stdlib app on `port` with a
/// 256M limit.
fn plan_fleet(project: &Project, name: &str, repo: &str, port: &str) -> Value {
    let out = project.deployctl(&[
        "plan",
        name,
        "--env",
        "one",
        "--repo",
        repo,
        "--ref",
        "v1",
        "--command",
        "python3 app.py",
        "--port",
        port,
        "--memory",
        "256M",
        "--output",
        "json",
    ]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    v["fleet"].clone()
}

/// The agents a plan's fleet part picks.
fn picks(fleet: &Value) -> Vec<String> {
    fleet["agents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["picked"] == true)
                .filter_map(|c| c["agent"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fleet_envs_select_by_label_place_by_room_and_forget_dead_agents() {
    let etcd = Etcd::start(&loopback());
    let uri = etcd.uri("e2e-fleet");
    let mut a = registered(&etcd, "{zone = \"a\"}", "3s");
    let mut b = registered(&etcd, "{zone = \"b\", gpu = \"none\"}", "30s");
    let project = Project::new();
    for (env, flag, value) in [
        ("za", "--select", "zone=a"),
        ("zb", "--select", "zone=b"),
        ("one", "--count", "1"),
    ] {
        let declare = [
            "declare",
            "env",
            "fleet",
            env,
            "--registry",
            &uri,
            flag,
            value,
        ];
        project.deployctl(&declare).ok();
    }
    let yaml = project.read("one.env.yaml");
    assert!(
        yaml.contains("type: fleet") && yaml.contains("count: 1"),
        "{yaml}"
    );
    project.deployctl(&["types", "env"]).ok().mentions("fleet");
    project
        .deployctl(&["types", "env", "fleet"])
        .ok()
        .mentions("--registry")
        .mentions("--select")
        .mentions("--count");
    project
        .deployctl(&[
            "declare",
            "env",
            "fleet",
            "bad",
            "--registry",
            &uri,
            "--select",
            "zone>=a",
        ])
        .expect_code(2)
        .mentions("select");

    // Both registered: each label env lists its one agent, the open one both.
    assert!(
        wait_for_nodes(&project, "za", &[a.address()], Duration::from_secs(15)),
        "za lists {:?}, not {}\n{}",
        nodes(&project, "za"),
        a.address(),
        a.stderr()
    );
    assert!(wait_for_nodes(
        &project,
        "zb",
        &[b.address()],
        Duration::from_secs(15)
    ));
    assert!(wait_for_nodes(
        &project,
        "one",
        &[a.address(), b.address()],
        Duration::from_secs(15)
    ));
    // nodes on a fleet shows the labels each agent registered with.
    let out = project.deployctl(&["nodes", "--env", "zb", "--output", "json"]);
    assert_eq!(out.json()["nodes"][0]["labels"]["gpu"], "none", "{out}");
    project
        .deployctl(&["nodes", "--env", "zb"])
        .ok()
        .mentions("labels gpu=none,zone=b");

    // Selected by label: deployed to A only.
    let repo = GitRepo::new();
    repo.commit_app("fleet", Some("v1"));
    project
        .run_app("za", "wa", &repo.url(), "v1", &["--memory", "512M"])
        .ok()
        .mentions(&a.address());
    assert!(a.record("wa").is_some(), "A runs wa");
    assert!(b.record("wa").is_none(), "B does not run wa");
    let (out, dep) = project.status_json("wa");
    out.ok();
    let instances = dep["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 1, "{dep:#}");
    assert_eq!(instances[0]["agent"], a.address().as_str(), "{dep:#}");
    assert_eq!(instances[0]["state"], "healthy", "{dep:#}");

    // B gets two deployments without limits: more deployments than A, but more room.
    for (name, port) in [("wb1", "8001"), ("wb2", "8002")] {
        project
            .run_app("zb", name, &repo.url(), "v1", &["--port", port])
            .ok();
    }

    // --count 1 picks the agent with the most room for it (A's 512M limit counts) once the
    // registry has the new capacities; plan says why.
    let mut plan = Value::Null;
    let picked_b = wait_until(Duration::from_secs(20), || {
        plan = plan_fleet(&project, "solo", &repo.url(), "8003");
        picks(&plan) == [b.address()]
            && plan["agents"].as_array().is_some_and(|agents| {
                agents.iter().any(|c| {
                    c["agent"] == a.address().as_str()
                        && c["why"].as_str().is_some_and(|w| w.contains("less room"))
                })
            })
    });
    assert!(
        picked_b,
        "plan did not pick B ({}) over A: {plan:#}",
        b.address()
    );
    project
        .run_app(
            "one",
            "solo",
            &repo.url(),
            "v1",
            &["--port", "8003", "--memory", "256M"],
        )
        .ok();
    assert!(
        b.record("solo").is_some(),
        "solo went to B, with the most room"
    );
    assert!(a.record("solo").is_none());
    let (out, dep) = project.status_json("solo");
    out.ok();
    assert_eq!(
        dep["instances"].as_array().map(Vec::len),
        Some(1),
        "{dep:#}"
    );
    // B takes a 1G limit more: now A has the most room (a new deployment would go there),
    // but a redeploy of solo stays on B, where it runs.
    project
        .run_app(
            "zb",
            "wb3",
            &repo.url(),
            "v1",
            &["--port", "8004", "--memory", "1G"],
        )
        .ok();
    let mut plan = String::new();
    let picks_a = wait_until(Duration::from_secs(20), || {
        plan = picks(&plan_fleet(&project, "probe", &repo.url(), "8005")).join(",");
        plan == a.address()
    });
    assert!(picks_a, "a new deployment does not go to A: {plan}");
    project
        .run_app(
            "one",
            "solo",
            &repo.url(),
            "v1",
            &["--port", "8003", "--memory", "256M", "--env-var", "V=2"],
        )
        .ok()
        .mentions(&b.address());
    assert!(a.record("solo").is_none(), "the redeploy stayed on B");
    assert_eq!(
        picks(&plan_fleet(&project, "solo", &repo.url(), "8003")),
        [b.address()]
    );
    project
        .deployctl(&["remove", "solo"])
        .ok()
        .mentions(&b.address());
    assert!(b.record("solo").is_none(), "removed from B");

    // A killed agent leaves the registry within its TTL (3 s): nodes stops listing it.
    a.kill9();
    let killed = Instant::now();
    assert!(
        wait_for_nodes(&project, "one", &[b.address()], Duration::from_secs(20)),
        "the killed agent is still listed: {:?}",
        nodes(&project, "one")
    );
    assert!(nodes(&project, "za").is_empty());
    eprintln!(
        "killed agent gone from the registry after {:?}",
        killed.elapsed()
    );

    // A stopped agent revokes its lease: gone at once, long before its 30 s TTL.
    assert!(b.terminate(), "B stops cleanly");
    assert!(
        wait_for_nodes(&project, "one", &[], Duration::from_secs(10)),
        "the stopped agent is still listed: {:?}",
        nodes(&project, "one")
    );
    // No agent left: a deploy says so, naming the registry.
    project
        .run_app("za", "wa", &repo.url(), "v1", &[])
        .expect_code(1)
        .mentions("no live agent")
        .mentions(&uri);
}

/// etcd down when the agent starts: the agent runs anyway, logs it and keeps trying, and
/// registers once etcd is up; an etcd that lost its data (a new, empty one on the same
/// address) makes the agent's lease unknown, and the agent registers again.
#[test]
fn an_agent_registers_once_etcd_is_up_and_again_after_etcd_lost_it() {
    let etcd_ip = loopback();
    let uri = format!("etcd://{etcd_ip}:2379/e2e-late");
    let config =
        format!("register = \"{uri}\"\nlabels = {{zone = \"late\"}}\nregister_ttl = \"3s\"\n");
    let agent = Agent::start_with(&loopback(), &config, &[]);
    let project = Project::new();
    project
        .deployctl(&["declare", "env", "fleet", "late", "--registry", &uri])
        .ok();
    assert!(
        wait_until(Duration::from_secs(15), || agent
            .stderr()
            .contains("not registered in etcd; trying again")),
        "the agent does not say it retries: {}",
        agent.stderr()
    );
    project
        .deployctl(&["nodes", "--env", "late"])
        .expect_code(1)
        .mentions("does not answer")
        .mentions(&uri);

    // Up, then replaced by an empty one (the agent's lease unknown there): registered
    // each time.
    for when in ["once etcd is up", "again in a new, empty etcd"] {
        let _etcd = Etcd::start(&etcd_ip);
        let listed = wait_for_nodes(
            &project,
            "late",
            &[agent.address()],
            Duration::from_secs(40),
        );
        assert!(listed, "not registered {when}: {}", agent.stderr());
    }
    // It served all along.
    project
        .deployctl(&[
            "declare",
            "env",
            "agent",
            "direct",
            "--address",
            &agent.address(),
        ])
        .ok();
    project.deployctl(&["nodes", "--env", "direct"]).ok();
}
