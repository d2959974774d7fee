//! Envs of several agents: one declaration deployed to every agent at once, status, logs,
//! apply and remove across all of them; history and rollback; `types`.

use std::time::Duration;

use deployctl_e2e::*;

/// Three agents on three loopback addresses, their apps all on port 8000.
#[test]
fn fleet_of_three_runs_applies_and_removes() {
    let ips = [loopback(), loopback(), loopback()];
    let agents: Vec<Agent> = ips.iter().map(|ip| Agent::start(ip)).collect();
    let project = Project::new();
    project.declare_env_of("fleet", &agents.iter().collect::<Vec<_>>());
    let addresses: Vec<String> = agents.iter().map(|a| a.address()).collect();
    let repo = GitRepo::new();
    let commit = repo.commit_app("fleet", Some("v1"));
    project
        .deployctl(&[
            "declare",
            "deployment",
            "model",
            "--env",
            "fleet",
            "--repo",
            &repo.url(),
            "--ref",
            "v1",
            "--command",
            "python3 app.py",
            "--health-path",
            "/health",
        ])
        .ok();
    let out = project.deployctl(&["run", "--load", "model"]);
    out.ok();
    for a in &addresses {
        out.mentions(a);
    }

    // Every agent runs it, on its own address, port 8000.
    for agent in &agents {
        let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
        assert_eq!(served["marker"], "fleet", "{served}");
        assert_eq!(served["commit"], commit.as_str(), "{served}");
    }
    let (out, dep) = project.status_json("model");
    out.ok();
    let instances = dep["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 3, "{dep:#}");
    for inst in instances {
        assert_eq!(inst["state"], "healthy", "{inst:#}");
        assert_eq!(inst["commit"], commit.as_str(), "{inst:#}");
        assert!(addresses.contains(&inst["agent"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(dep["env"], "fleet");

    // apply: POST to a healthy instance's /predict, the reply printed.
    let out = project.deployctl(&["apply", "model", r#"{"x": [1, 2, 3]}"#]);
    out.ok();
    let reply: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(reply["marker"], "fleet", "{out}");
    assert_eq!(reply["input"]["x"][2], 3, "{out}");
    project.write("input.json", r#"{"from": "file"}"#);
    let out = project.deployctl(&["apply", "model", "@input.json"]);
    out.ok().mentions("\"from\"");
    project
        .deployctl(&["apply", "model", "{not json"])
        .expect_code(2)
        .mentions("DATA");

    // logs from every instance, prefixed by the agent.
    let out = project.deployctl(&["logs", "model", "-n", "10"]);
    out.ok();
    for a in &addresses {
        out.mentions(&format!("[{a}] app fleet listening"));
    }

    let out = project.deployctl(&["remove", "model"]);
    out.ok();
    for agent in &agents {
        assert!(
            wait_until(Duration::from_secs(10), || http_get(
                &agent.app_url(8000, "/")
            )
            .is_none()),
            "the app on {} should be gone",
            agent.ip
        );
        assert!(!agent.deployment_dir("model").exists());
    }
    project.deployctl(&["status", "model"]).expect_code(1);
    assert!(
        project.path().join("model.deploy.yaml").exists(),
        "the declaration stays"
    );
}

/// One agent of the env does not answer: the others deploy, the command fails naming it.
#[test]
fn fan_out_reports_the_agent_that_failed() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::new();
    // Nothing listens on port 9 (discard) of an address of this test's own.
    let silent = loopback();
    let silent_url = format!("http://{silent}:9");
    project
        .deployctl(&[
            "declare",
            "env",
            "agent",
            "half",
            "--address",
            &agent.address(),
            "--address",
            &silent_url,
        ])
        .ok();
    let repo = GitRepo::new();
    repo.commit_app("half", None);
    let out = project.deployctl(&[
        "run",
        "svc",
        "--env",
        "half",
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
    ]);
    out.expect_code(1)
        .mentions(&format!("{silent}:9"))
        .mentions("1 of 2");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "half");
    let (out, dep) = project.status_json("svc");
    out.expect_code(1);
    let states: Vec<&str> = dep["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap_or(""))
        .collect();
    assert!(
        states.contains(&"healthy") && states.contains(&"unreachable"),
        "{dep:#}"
    );
}

#[test]
fn history_and_rollback_across_three_releases() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    let mut commits = Vec::new();
    for (i, tag) in ["v1", "v2", "v3"].iter().enumerate() {
        commits.push(repo.commit_app(&format!("m{}", i + 1), Some(tag)));
        project
            .deployctl(&[
                "run",
                "svc",
                "--repo",
                &repo.url(),
                "--ref",
                tag,
                "--command",
                "python3 app.py",
                "--health-path",
                "/health",
            ])
            .ok();
    }
    let marker =
        || wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10))["marker"].clone();
    assert_eq!(marker(), "m3");

    let out = project.deployctl(&["history", "svc", "--output", "json"]);
    out.ok();
    let h = out.json();
    let releases = h["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 3, "{h:#}");
    for (i, r) in releases.iter().enumerate() {
        assert_eq!(r["number"], i as u64 + 1);
        assert_eq!(r["ref"], format!("v{}", i + 1));
        assert_eq!(r["commit"], commits[i].as_str());
        assert_eq!(r["result"], "ok");
        assert!(r["time"].as_i64().unwrap_or(0) > 0);
        assert!(r.get("packages_hash").is_some());
    }
    assert_eq!(releases[2]["current"], true);
    let text = project.deployctl(&["history", "svc"]);
    text.ok().mentions("3*").mentions(&commits[0][..10]);

    // Default: back to the one before the current.
    project.deployctl(&["rollback", "svc"]).ok();
    assert_eq!(marker(), "m2");
    let (_, dep) = project.status_json("svc");
    assert_eq!(dep["instances"][0]["commit"], commits[1].as_str());

    project.deployctl(&["rollback", "svc", "--to", "1"]).ok();
    assert_eq!(marker(), "m1");
    project
        .deployctl(&["rollback", "svc", "--to", "99"])
        .expect_code(2)
        .mentions("99");
    // The declaration still names v3: rollback does not rewrite it.
    assert!(project.read("svc.deploy.yaml").contains("v3"));
    let h = project
        .deployctl(&["history", "svc", "--output", "json"])
        .json();
    assert_eq!(h["releases"].as_array().unwrap().len(), 5, "{h:#}");
}

#[test]
fn types_list_every_declaration_field() {
    let project = Project::new();
    project
        .deployctl(&["types"])
        .ok()
        .mentions("env: agent")
        .mentions("deployment: process");
    let out = project.deployctl(&["types", "deployment", "process"]);
    out.ok();
    for field in [
        "env",
        "repo",
        "ref",
        "workdir",
        "command",
        "packages.pip",
        "packages.apt",
        "packages.conda",
        "requirements",
        "start_script",
        "env_vars",
        "secrets",
        "port",
        "health.path",
        "health.startup_timeout",
        "health.interval",
        "health.unhealthy_after",
        "health.restart_after",
        "warmup",
        "apply_path",
        "owner",
        "restart",
        "kill_timeout",
    ] {
        out.mentions(field);
    }
    out.mentions("8000")
        .mentions("2m")
        .mentions("on-failure")
        .mentions("/predict");
    let out = project.deployctl(&["types", "env", "agent"]);
    out.ok()
        .mentions("addresses")
        .mentions("token_file")
        .mentions("ca_file");
    project
        .deployctl(&["types", "deployment", "docker"])
        .expect_code(2)
        .mentions("docker");
}
