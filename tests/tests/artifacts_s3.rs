//! `s3://BUCKET/KEY` artifacts (issue 24), read from moto (a real S3-compatible server that
//! checks signatures here) with the deployment owner's credentials, kept as the owner's
//! secrets on the agent: a missing one is named with the command that sets it; refused
//! credentials are said; with the right ones a cut transfer is resumed and the app sees
//! the object's content.

use std::path::Path;

use deployctl_e2e::*;

/// The app: its workdir over HTTP.
const SERVE: &str = "python3 -m http.server --bind $HOST $PORT";

/// The SHA-256 of `content` (written to a file in `dir`).
fn sha256_of(dir: &Path, content: &[u8]) -> String {
    let file = dir.join("content");
    std::fs::write(&file, content).expect("writing the content");
    sha256(&file)
}

#[test]
fn an_s3_artifact_is_read_with_the_owners_secrets() {
    let moto_ip = loopback();
    let moto = Moto::start_with_auth(&moto_ip, "models");
    let model = b"iris weights v1\n".repeat(5000);
    let other = b"tokenizer\n".to_vec();
    moto.put_object("models", "iris/model.txt", &model);
    moto.put_object("models", "iris/other.txt", &other);
    let work = tempfile::tempdir().expect("a directory");
    let (hex, other_hex) = (
        sha256_of(work.path(), &model),
        sha256_of(work.path(), &other),
    );

    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    // The app serves its workdir's files, model.txt among them.
    let repo = GitRepo::new();
    repo.write("README", "serves its files\n");
    repo.commit("serves its files");
    let artifact = format!("model.txt=s3://models/iris/model.txt#sha256={hex}");
    let deploy = |name: &str, port: &str, artifact: &str| {
        project.deployctl(&[
            "run",
            name,
            "--repo",
            &repo.url(),
            "--command",
            SERVE,
            "--port",
            port,
            "--artifact",
            artifact,
        ])
    };

    // No credentials yet: refused, naming the secrets and the command that sets them.
    let out = deploy("model", "8000", &artifact);
    out.expect_code(1)
        .mentions("s3://models/iris/model.txt")
        .mentions("no secrets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")
        .mentions("`deployctl secret set --env e2e --owner")
        .mentions("AWS_ENDPOINT_URL")
        // Its checks (as `deployctl check`) say it too.
        .mentions("has no secret AWS_SECRET_ACCESS_KEY on");

    let set = |name: &str, value: &str| {
        project.write("value", value);
        project
            .deployctl(&["secret", "set", name, "--from-file", "value"])
            .ok();
    };
    set("AWS_ACCESS_KEY_ID", &moto.access_key);
    set("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    set("AWS_ENDPOINT_URL", &moto.endpoint);
    // Credentials the store refuses: said, with the secrets to check.
    deploy("model", "8000", &artifact)
        .expect_code(1)
        .mentions(&format!(
            "{} refused the owner's credentials",
            moto.endpoint
        ))
        .mentions("AWS_SECRET_ACCESS_KEY");

    // The right ones: fetched, verified and seen by the app. An earlier transfer cut after
    // 30000 bytes is resumed from there (a signed Range request).
    set("AWS_SECRET_ACCESS_KEY", &moto.secret_key);
    let partial = agent.data_dir.join("artifacts/partial");
    std::fs::create_dir_all(&partial).expect("the partial downloads' directory");
    std::fs::write(partial.join(format!("{hex}.part")), &model[..30000]).expect("a partial file");
    deploy("model", "8000", &artifact)
        .ok()
        .mentions("artifacts:")
        .mentions("fetched")
        .mentions("resumed at 29.3 KiB");
    let url = agent.app_url(8000, "/model.txt");
    assert!(
        wait_until(std::time::Duration::from_secs(20), || {
            http_get(&url).is_some_and(|(code, body)| code == 200 && body.as_bytes() == model)
        }),
        "the app serves the object's content"
    );
    // The same file for another deployment: reused, not downloaded again.
    deploy("again", "8001", &artifact).ok().mentions("reused");
    // A wrong hash fails, naming both hashes (one the store does not have: a hash it has
    // is reused whatever the URL, the store being addressed by content).
    let wrong = format!(
        "model.txt=s3://models/iris/other.txt#sha256={}",
        "0".repeat(64)
    );
    deploy("wrong", "8002", &wrong)
        .expect_code(1)
        .mentions("sha256 mismatch")
        .mentions(&other_hex);
}
