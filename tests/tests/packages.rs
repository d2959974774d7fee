//! Deployments with extra Python packages: `--pip`, and the iris example with its
//! requirements.txt and start script. These are the slow tests (they install packages).

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn pip_package_is_installed_for_the_app() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let commit = repo.commit_app("with-six", Some("v1"));

    let out = project.deployctl_timeout(
        &[
            "run",
            "pkg",
            "--env",
            ENV,
            "--repo",
            &repo.url(),
            "--ref",
            "v1",
            "--command",
            "python app.py",
            "--pip",
            "six==1.16.0",
            "--env-var",
            "APP_IMPORT=six",
            "--health-path",
            "/health",
            "--health-timeout",
            "30s",
        ],
        INSTALL_TIMEOUT,
    );
    out.ok();

    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["module_version"], "1.16.0", "{served}");
    assert_eq!(served["commit"], commit.as_str(), "{served}");
    // six comes from the deployment's environment, inside the agent's data directory.
    let module_file = served["module_file"].as_str().unwrap_or_default();
    assert!(
        module_file.starts_with(&*agent.data_dir.to_string_lossy()),
        "six should come from the deployment's environment under {}, not {module_file:?}",
        agent.data_dir.display()
    );
    let (out, dep) = project.status_json("pkg");
    out.ok();
    assert_eq!(check_status_shape(&dep)["state"], "healthy", "{dep:#}");
}

#[test]
fn iris_example_predicts() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.copy_dir(&examples_dir().join("iris-api"), "");
    let commit = repo.commit("iris-api");
    repo.tag("v1.0.0");

    let out = project.deployctl_timeout(
        &[
            "run",
            "iris",
            "--env",
            ENV,
            "--repo",
            &repo.url(),
            "--ref",
            "v1.0.0",
            "--command",
            "python app.py",
            "--requirements",
            "requirements.txt",
            "--start-script",
            "scripts/fetch-model.sh",
            "--health-path",
            "/health",
            "--health-timeout",
            "30s",
        ],
        INSTALL_TIMEOUT,
    );
    out.ok().mentions(&format!("http://{ip}:8000"));

    let info = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(info["model_version"], "iris-logreg-1", "{info}");
    assert_eq!(info["commit"], commit.as_str(), "{info}");

    let (code, body) = http_post(
        &agent.app_url(8000, "/predict"),
        r#"{"instances": [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.7, 3.0, 5.2, 2.3]]}"#,
    )
    .expect("/predict answers");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let classes: Vec<&str> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["setosa", "versicolor", "virginica"], "{body}");

    // fastjsonschema rejects a malformed request.
    let (code, body) = http_post(
        &agent.app_url(8000, "/predict"),
        r#"{"instances": [[1, 2]]}"#,
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");

    let (out, dep) = project.status_json("iris");
    out.ok();
    assert_eq!(check_status_shape(&dep)["state"], "healthy", "{dep:#}");
}
