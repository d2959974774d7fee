//! Setups and checks many tests share: the SPEC shape of a status entry, the flags of a
//! fast deploy, the iris app deployed.

use serde_json::Value;

use crate::Project;

/// Checks that `dep` (one element of `status --output json`'s `deployments`) has the SPEC
/// shape, and returns its first instance.
pub fn check_status_shape(dep: &Value) -> Value {
    for key in ["name", "owner", "env"] {
        assert!(
            dep[key].is_string(),
            "status: {key} must be a string in {dep:#}"
        );
    }
    let instances = dep["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("status: instances must be an array in {dep:#}"));
    assert!(!instances.is_empty(), "status: no instances in {dep:#}");
    for inst in instances {
        for key in ["agent", "state", "ref", "commit", "url"] {
            assert!(
                inst[key].is_string(),
                "status: instance {key} must be a string in {inst:#}"
            );
        }
        for key in ["release", "restarts", "uptime_s", "memory_bytes"] {
            assert!(
                inst[key].is_u64(),
                "status: instance {key} must be a whole number in {inst:#}"
            );
        }
        assert!(
            inst["pid"].is_u64() || inst["pid"].is_null(),
            "status: pid must be a number or null in {inst:#}"
        );
        assert!(
            inst["cpu_percent"].is_number(),
            "status: cpu_percent must be a number in {inst:#}"
        );
    }
    instances[0].clone()
}

/// `deployctl run NAME` of `python3 app.py` from `repo` in `env` on port 8000, checked every
/// second and given two minutes to be healthy; `extra` appended.
pub fn fast_run_args<'a>(
    env: &'a str,
    name: &'a str,
    repo: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        name,
        "--env",
        env,
        "--repo",
        repo,
        "--command",
        "python3 app.py",
        "--port",
        "8000",
        "--health-timeout",
        "120s",
        "--health-interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    args
}

/// An agent and a project whose file state has `iris` (release 1 of `repo`'s v1), deployed.
pub fn iris_deployed() -> (crate::Loopback, crate::Agent, Project, crate::GitRepo) {
    let ip = crate::loopback();
    let agent = crate::Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = crate::GitRepo::new();
    repo.commit_app("one", Some("v1"));
    project
        .run_app("e2e", "iris", &repo.url(), "v1", &["--port", "8000"])
        .ok();
    (ip, agent, project, repo)
}
