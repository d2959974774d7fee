//! A real model server end to end (issue 24): MLflow's `mlflow models serve` (the
//! mlflow-skinny package, installed by the agent with uv from requirements.txt) serves a
//! pyfunc model whose directory comes from an `artifacts` archive (.tar.gz, extract) on
//! the test's own HTTP server, which logs every request. The first deploy downloads it; a
//! redeploy and a rollback download nothing (the step says reused); a wrong hash fails the
//! deploy and the release before keeps serving; `DATA_DIR` outlives every release; and a
//! real prediction (POST /invocations) answers.

use std::path::Path;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "models";

/// MLflow's model directory for a model from code, as `mlflow.pyfunc.save_model(path,
/// python_model="doubler.py")` writes it (less what `--env-manager local` does not read).
const MLMODEL: &str = "flavors:
  python_function:
    loader_module: mlflow.pyfunc.loaders.code_model
    model_code_path: doubler.py
";

const DOUBLER_PY: &str = r#"import mlflow
from mlflow.pyfunc import PythonModel

class Doubler(PythonModel):
    def predict(self, context, model_input, params=None):
        return [2 * x for x in model_input["x"]]

mlflow.models.set_model(Doubler())
"#;

/// What the agent installs (uv's cache keeps the next test run from downloading it).
const REQUIREMENTS: &str = "mlflow-skinny==3.18.0\npandas==3.1.1\n";

/// Notes its release in DATA_DIR, then serves the model the release was given.
const COMMAND: &str = r#"echo "$DEPLOYMENT_RELEASE" >> "$DATA_DIR/starts.txt" && exec mlflow models serve -m models/doubler --env-manager local -h "$HOST" -p "$PORT""#;

/// The model directory as `files/doubler.tar.gz`: its hash.
fn model_archive(dir: &Path) -> String {
    let (files, model) = (dir.join("files"), dir.join("model"));
    std::fs::create_dir_all(&files).expect("files dir");
    std::fs::create_dir_all(&model).expect("model dir");
    std::fs::write(model.join("MLmodel"), MLMODEL).expect("MLmodel");
    std::fs::write(model.join("doubler.py"), DOUBLER_PY).expect("doubler.py");
    tar_gz(&model, &files.join("doubler.tar.gz"));
    sha256(&files.join("doubler.tar.gz"))
}

/// The prediction for x = 1 and 4, once the model answers.
fn predict(agent: &Agent) -> String {
    let url = agent.app_url(8000, "/invocations");
    let input = r#"{"dataframe_split": {"columns": ["x"], "data": [[1], [4]]}}"#;
    let mut last = None;
    let answered = wait_until(Duration::from_secs(60), || {
        last = http_post(&url, input);
        matches!(&last, Some((200, _)))
    });
    assert!(answered, "POST {url} did not answer 200: {last:?}");
    last.map(|(_, body)| body).unwrap_or_default()
}

fn starts(agent: &Agent) -> Vec<String> {
    let path = agent.data_dir.join("deployments/doubler/data/starts.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.split_whitespace().map(str::to_string).collect()
}

#[test]
fn mlflow_serves_a_model_from_an_artifact_archive() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let work = tempfile::tempdir().expect("a directory for the model server");
    let hash = model_archive(work.path());
    let server = ModelServer::start(&ip, work.path(), "");
    let repo = GitRepo::new();
    repo.write("requirements.txt", REQUIREMENTS);
    repo.commit("serves the doubler with MLflow");
    let url = repo.url();
    let artifact = format!(
        "models/doubler={}/doubler.tar.gz#sha256={hash}&extract",
        server.base
    );
    let first = project.deployctl_timeout(
        &[
            "run",
            "doubler",
            "--repo",
            &url,
            "--requirements",
            "requirements.txt",
            "--command",
            COMMAND,
            "--artifact",
            &artifact,
            "--health-path",
            "/ping",
            "--health-timeout",
            "3m",
        ],
        INSTALL_TIMEOUT,
    );
    first
        .ok()
        .mentions("models/doubler")
        .mentions("fetched in")
        .mentions("unpacked (2 entries)");
    assert_eq!(predict(&agent), r#"{"predictions": [2, 8]}"#);
    let downloads = server.requests();
    assert_eq!(downloads.len(), 1, "one download: {downloads:?}");

    // A redeploy and a rollback download nothing: the store has the model.
    let again = project.deployctl_timeout(
        &["run", "doubler", "--env-var", "RELEASE=2"],
        INSTALL_TIMEOUT,
    );
    again.ok().mentions("models/doubler").mentions("reused");
    assert!(!again.all().contains("fetched in"), "{again}");
    assert_eq!(predict(&agent), r#"{"predictions": [2, 8]}"#);
    let back = project.deployctl_timeout(&["rollback", "doubler"], INSTALL_TIMEOUT);
    back.ok().mentions("reused");
    assert!(!back.all().contains("fetched in"), "{back}");
    assert_eq!(predict(&agent), r#"{"predictions": [2, 8]}"#);
    assert_eq!(server.requests(), downloads, "nothing downloaded again");
    let serving = project.status_json("doubler").1["instances"][0]["release"].clone();

    // A wrong hash fails the deploy cleanly; the release before keeps serving.
    let wrong = "0".repeat(64);
    let bad = format!(
        "models/doubler={}/doubler.tar.gz#sha256={wrong}&extract",
        server.base
    );
    let failed =
        project.deployctl_timeout(&["run", "doubler", "--artifact", &bad], INSTALL_TIMEOUT);
    failed
        .expect_code(1)
        .mentions("sha256 mismatch")
        .mentions(&wrong)
        .mentions(&hash);
    assert_eq!(predict(&agent), r#"{"predictions": [2, 8]}"#);
    let still = project.status_json("doubler").1["instances"][0]["release"].clone();
    assert_eq!(still, serving, "the release before keeps serving");

    // DATA_DIR outlived the redeploy and the rollback: each start added its line.
    assert_eq!(starts(&agent), ["1", "2", "3"], "DATA_DIR is kept");
}
