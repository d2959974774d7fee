//! The `resources` fields end to end: flags and the declaration's `resources:` block go to
//! the agent in bytes, cores and counts, are kept in the release record and come back in
//! `status` and `plan`; bad values exit 2 naming the field. (Enforcing them is tested with
//! the walls.)

use deployctl_e2e::*;

const ENV: &str = "e2e";
const MIB: u64 = 1024 * 1024;

/// The spec of the newest release in the agent's record of `name`.
fn recorded_resources(agent: &Agent, name: &str) -> serde_json::Value {
    let record = agent
        .record(name)
        .unwrap_or_else(|| panic!("no record of {name}"));
    record["releases"]
        .as_array()
        .and_then(|r| r.last())
        .map(|r| r["spec"]["resources"].clone())
        .unwrap_or_else(|| panic!("no release in {record:#}"))
}

#[test]
fn resources_go_from_flags_and_declarations_to_the_agent_and_back() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("limited", Some("v1"));

    project
        .run_app(
            ENV,
            "svc",
            &repo.url(),
            "v1",
            &["--memory", "256M", "--cpus", "0.5", "--pids", "512"],
        )
        .ok();

    // The declaration keeps them as written.
    let decl = project.read("svc.deploy.yaml");
    for line in ["resources:", "memory: 256M", "cpus: 0.5", "pids: 512"] {
        assert!(
            decl.contains(line),
            "{line:?} not in svc.deploy.yaml:\n{decl}"
        );
    }
    // The agent keeps them in the release record, in bytes, cores and counts.
    let r = recorded_resources(&agent, "svc");
    assert_eq!(r["memory"], 256 * MIB, "{r}");
    assert_eq!(r["cpus"], 0.5, "{r}");
    assert_eq!(r["pids"], 512, "{r}");
    assert!(
        r.get("build_memory").is_none() && r.get("gpus").is_none(),
        "{r}"
    );

    // Status returns them.
    let (out, dep) = project.status_json("svc");
    out.ok();
    let limits = &dep["instances"][0]["limits"];
    assert_eq!(limits["memory_bytes"], 256 * MIB, "{dep:#}");
    assert_eq!(limits["cpus"], 0.5, "{dep:#}");
    assert_eq!(limits["pids"], 512, "{dep:#}");
    assert_eq!(limits["gpus"], 0, "{dep:#}");
    project
        .deployctl(&["status", "svc"])
        .ok()
        .mentions("limits: memory 256 MiB, cpus 0.5, pids 512");

    // Plan lists a changed limit like any other field.
    project
        .deployctl(&["plan", "svc", "--memory", "1G", "--build-memory", "2G"])
        .ok()
        .mentions("resources.memory: \"256M\" → \"1G\"")
        .mentions("resources.build_memory: (unset) → \"2G\"");
    project
        .deployctl(&["plan", "svc"])
        .ok()
        .mentions("No changes");

    // A declaration with a `resources:` block, sizes written every way.
    project.write(
        "dec.deploy.yaml",
        &format!(
            "repo: {}\nref: v1\ncommand: python3 app.py\nport: 8001\nhealth: {{path: /health}}\n\
             resources:\n  memory: 1.5G\n  cpus: 1\n  pids: 64\n  build_memory: 1GiB\n",
            repo.url()
        ),
    );
    project.deployctl(&["run", "dec", "--env", ENV]).ok();
    let r = recorded_resources(&agent, "dec");
    assert_eq!(r["memory"], 1536 * MIB, "{r}");
    assert_eq!(r["cpus"], 1.0, "{r}");
    assert_eq!(r["pids"], 64, "{r}");
    assert_eq!(r["build_memory"], 1024 * MIB, "{r}");

    // `declare deployment`: written as given, and a later flag overrides only its field.
    project
        .deployctl(&[
            "declare",
            "deployment",
            "gpu",
            "--repo",
            &repo.url(),
            "--command",
            "python3 app.py",
            "--memory",
            "8GiB",
            "--gpus",
            "1",
            "--build-memory",
            "4294967296",
        ])
        .ok();
    project
        .deployctl(&["declare", "deployment", "gpu", "--cpus", "2"])
        .ok();
    let decl = project.read("gpu.deploy.yaml");
    for line in [
        "memory: 8GiB",
        "gpus: 1",
        "cpus: 2",
        "build_memory: 4294967296",
    ] {
        assert!(
            decl.contains(line),
            "{line:?} not in gpu.deploy.yaml:\n{decl}"
        );
    }
}

#[test]
fn bad_resources_exit_2_naming_the_field() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("x", Some("v1"));
    for (flags, field) in [
        (&["--memory", "lots"][..], "resources.memory: \"lots\""),
        (&["--memory", "1M"], "resources.memory"),
        (&["--cpus", "0"], "resources.cpus"),
        (&["--cpus", "many"], "--cpus"),
        (&["--cpus", "2000"], "resources.cpus"),
        (&["--pids", "4"], "resources.pids"),
        (&["--build-memory", "8X"], "resources.build_memory"),
    ] {
        project
            .run_app(ENV, "bad", &repo.url(), "v1", flags)
            .expect_code(2)
            .mentions(field);
    }
    // An unknown field in the block is named too.
    project.write(
        "worse.deploy.yaml",
        &format!(
            "repo: {}\ncommand: python3 app.py\nresources:\n  memory: 1G\n  swap: 2G\n",
            repo.url()
        ),
    );
    project
        .deployctl(&["run", "worse", "--env", ENV])
        .expect_code(2)
        .mentions("swap");
    // Nothing reached the agent.
    assert!(agent.record("bad").is_none() && agent.record("worse").is_none());
    assert!(agent.app_pids().is_empty());
}
