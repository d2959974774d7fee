//! Model files (issue 24): `artifacts` are fetched once per node into a store by content
//! hash, verified, and linked read-only into each release. Served by a small HTTP server
//! of the test's own on its loopback address, which logs every request (so "nothing was
//! downloaded" is proved by its log), follows the Range of a resumed download, redirects,
//! and cuts the first transfer of the file it is told to.

use std::path::Path;
use std::process::Command;

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "artifacts";

/// Reads what it was given and tries to change it, as its own user.
const APP_PY: &str = r#"import hashlib, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
def probe():
    out = {"uid": os.getuid(), "release": os.environ["DEPLOYMENT_RELEASE"]}
    out["mlmodel"] = open("models/iris/MLmodel").read()
    out["tokenizer"] = open("tokenizer.json").read()
    out["weights"] = hashlib.sha256(open("models/weights.bin", "rb").read()).hexdigest()
    for name, path in [("write_file", "tokenizer.json"), ("write_model", "models/iris/MLmodel"),
                       ("add_to_model", "models/iris/new.txt")]:
        try:
            with open(path, "a") as f:
                f.write("x")
            out[name] = "written"
        except OSError as e:
            out[name] = type(e).__name__
    try:
        os.chmod("models/iris/MLmodel", 0o666)
        out["chmod"] = "changed"
    except OSError as e:
        out["chmod"] = type(e).__name__
    return out
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(probe()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

/// An archive with an entry that leaves its directory.
const EVIL_PY: &str = r#"import io, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    for name in ("fine.txt", "../evil.txt"):
        i = tarfile.TarInfo(name)
        i.size = 4
        t.addfile(i, io.BytesIO(b"evil"))
"#;

/// The files the server has: a model directory as a .tar.gz, a tokenizer, 4 MiB of
/// weights and the archive with an escaping entry. Their hashes.
fn make_files(dir: &Path) -> [String; 4] {
    let files = dir.join("files");
    let model = dir.join("model");
    std::fs::create_dir_all(&files).expect("files dir");
    std::fs::create_dir_all(model.join("data")).expect("model dir");
    std::fs::write(model.join("MLmodel"), "flavors:\n  python_function: {}\n").expect("MLmodel");
    std::fs::write(model.join("data/model.pkl"), vec![7u8; 2048]).expect("model.pkl");
    tar_gz(&model, &files.join("iris.tar.gz"));
    std::fs::write(files.join("tokenizer.json"), r#"{"vocab": ["setosa"]}"#).expect("tokenizer");
    let weights: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(files.join("weights.bin"), weights).expect("weights");
    std::fs::write(dir.join("evil.py"), EVIL_PY).expect("evil.py");
    let made = Command::new("python3")
        .arg(dir.join("evil.py"))
        .arg(files.join("evil.tar.gz"))
        .status()
        .expect("python3");
    assert!(made.success(), "python3 made the escaping archive");
    [
        "iris.tar.gz",
        "tokenizer.json",
        "weights.bin",
        "evil.tar.gz",
    ]
    .map(|f| sha256(&files.join(f)))
}

#[test]
fn artifacts_are_fetched_once_verified_and_read_only() {
    require_root("the app runs as its own user and must not write the agent's files");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let work = tempfile::tempdir().expect("a directory for the model server");
    let [iris, tokenizer, weights, evil] = make_files(work.path());
    let server = ModelServer::start(&ip, work.path(), "weights.bin");
    let repo = GitRepo::new();
    repo.write("app.py", APP_PY);
    repo.commit("reads its model files");
    let url = repo.url();
    let base = server.base.clone();
    let flags = [
        format!("models/iris={base}/iris.tar.gz#sha256={iris}&extract"),
        format!("tokenizer.json={base}/redirect/tokenizer.json#sha256={tokenizer}"),
        format!("models/weights.bin={base}/weights.bin#sha256={weights}"),
    ];
    let mut args = vec![
        "run",
        "model",
        "--repo",
        &url,
        "--command",
        "python3 app.py",
    ];
    for f in &flags {
        args.extend(["--artifact", f.as_str()]);
    }
    let first = project.deployctl(&args);
    first.ok().mentions("artifacts:").mentions("fetched in");
    first
        .mentions("resumed at")
        .mentions("unpacked (3 entries)");
    let log = server.requests();
    assert!(
        log.iter().any(|l| l.starts_with("GET /weights.bin bytes=")),
        "the cut transfer was resumed with a Range: {log:?}"
    );
    assert!(log
        .iter()
        .any(|l| l.starts_with("GET /redirect/tokenizer.json")));
    assert!(
        log.iter().any(|l| l.starts_with("GET /tokenizer.json")),
        "{log:?}"
    );
    let seen = wait_for_json(
        &agent.app_url(8000, "/"),
        std::time::Duration::from_secs(20),
    );
    assert_eq!(
        seen["mlmodel"], "flavors:\n  python_function: {}\n",
        "{seen}"
    );
    assert_eq!(seen["tokenizer"], r#"{"vocab": ["setosa"]}"#, "{seen}");
    assert_eq!(seen["weights"], weights.as_str(), "{seen}");
    assert_ne!(seen["uid"], 0, "the app runs as its own user: {seen}");
    for k in ["write_file", "write_model", "add_to_model", "chmod"] {
        assert_eq!(
            seen[k], "PermissionError",
            "{k}: the app cannot change them: {seen}"
        );
    }
    let requests = log.len();

    // A redeploy, another deployment with the same file, and a rollback download nothing.
    project
        .deployctl(&["run", "model", "--env-var", "RELEASE=2"])
        .ok()
        .mentions("reused");
    assert_eq!(
        server.requests().len(),
        requests,
        "a redeploy downloads nothing"
    );
    let same = format!("tokenizer.json={base}/tokenizer.json#sha256={tokenizer}");
    project
        .deployctl(&[
            "run",
            "other",
            "--repo",
            &url,
            "--command",
            "python3 app.py",
            "--port",
            "8001",
            "--artifact",
            &same,
        ])
        .ok()
        .mentions("reused");
    assert_eq!(
        server.requests().len(),
        requests,
        "another deployment downloads nothing"
    );
    let back = project.deployctl(&["rollback", "model"]);
    back.ok().mentions("reused");
    assert!(!back.all().contains("fetched in"), "{back}");
    assert_eq!(
        server.requests().len(),
        requests,
        "a rollback downloads nothing"
    );
    let live = wait_for_json(
        &agent.app_url(8000, "/"),
        std::time::Duration::from_secs(20),
    );
    let release = live["release"].clone();

    // A wrong hash fails the step, naming both hashes and the URL; the release stays.
    let wrong = "0".repeat(64);
    let bad = format!("tokenizer.json={base}/tokenizer.json#sha256={wrong}");
    let failed = project.deployctl(&["run", "model", "--artifact", &bad]);
    failed
        .expect_code(1)
        .mentions("sha256 mismatch")
        .mentions(&wrong)
        .mentions(&tokenizer);
    failed.mentions(&format!("{base}/tokenizer.json"));
    let kept = wait_for_json(
        &agent.app_url(8000, "/"),
        std::time::Duration::from_secs(20),
    );
    assert_eq!(
        kept["release"], release,
        "the previous release keeps serving: {kept}"
    );

    // An archive entry that would land outside its directory refuses the archive.
    let escape = format!("models/evil={base}/evil.tar.gz#sha256={evil}&extract");
    let refused = project.deployctl(&["run", "model", "--artifact", &escape]);
    refused.expect_code(1).mentions("would land outside");
    let store = agent.data_dir.join("artifacts");
    for p in [
        store.join("evil.txt"),
        store.join("partial/evil.txt"),
        store.join("unpacked/evil.txt"),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    assert!(
        !store.join("unpacked").join(&evil).exists(),
        "nothing of it is kept unpacked"
    );
    assert_eq!(
        wait_for_json(
            &agent.app_url(8000, "/"),
            std::time::Duration::from_secs(20)
        )["release"],
        release
    );

    // No sha256: refused (exit 2) unless --allow-unpinned, which check warns about.
    let unpinned = format!("extra.json={base}/tokenizer.json");
    project
        .deployctl(&["run", "model", "--artifact", &unpinned])
        .expect_code(2)
        .mentions("artifacts[3].sha256: is required")
        .mentions("--allow-unpinned");
    project
        .deployctl(&["declare", "deployment", "model", "--artifact", &unpinned])
        .ok();
    project
        .deployctl(&["check", "model"])
        .expect_code(1)
        .mentions("has no sha256");
    project
        .deployctl(&["run", "--load", "model", "--allow-unpinned"])
        .ok()
        .mentions("extra.json");

    // A file:// URL is read as the deployment's user: what it may read, not what root may.
    let shared = shared_dir();
    let labels = shared.path().join("labels.txt");
    std::fs::write(&labels, "setosa\n").expect("writing labels.txt");
    let readable = format!(
        "labels.txt=file://{}#sha256={}",
        labels.display(),
        sha256(&labels)
    );
    project
        .deployctl(&["run", "other", "--artifact", &readable])
        .ok()
        .mentions("labels.txt 7 B fetched");
    let private = tempfile::tempdir().expect("a directory for a file only root may read");
    let secret = private.path().join("secret.txt");
    std::fs::write(&secret, "root only\n").expect("writing secret.txt");
    {
        use std::os::unix::fs::PermissionsExt;
        let only_root = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&secret, only_root).expect("secret.txt for root only");
    }
    let hidden = format!(
        "secret.txt=file://{}#sha256={}",
        secret.display(),
        sha256(&secret)
    );
    project
        .deployctl(&["run", "other", "--artifact", &hidden])
        .expect_code(1)
        .mentions("cannot read")
        .mentions("(the deployment's user): Permission denied");

    // A URL that does not answer with the file says so, naming it.
    let missing = format!("missing.bin={base}/missing.bin#sha256={wrong}");
    project
        .deployctl(&["run", "other", "--artifact", &missing])
        .expect_code(1)
        .mentions(&format!("{base}/missing.bin: HTTP 404 Not Found"));

    // `nodes` shows the store (as the collection after the deploy saw it).
    let mut stored = Value::Null;
    let counted = wait_until(std::time::Duration::from_secs(20), || {
        let nodes = project.deployctl(&["nodes", "--output", "json"]);
        stored = nodes.json()["nodes"][0]["artifacts"].clone();
        stored["in_use"].as_u64().unwrap_or(0) >= 3
            && stored["in_use_bytes"].as_u64().unwrap_or(0) >= 4 << 20
    });
    assert!(
        counted,
        "nodes shows the artifacts in use and their size: {stored}"
    );
}
