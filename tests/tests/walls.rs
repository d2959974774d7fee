//! Walls between deployments, on an agent that runs as root (as under systemd): each
//! deployment runs as its own Unix user, in its own mount namespace (a private /tmp, a
//! /proc that shows only its own processes), with no way back to root. Two owners, each
//! with an app and a secret; the attacks are what B's own code can do (here through
//! `deployctl exec` as B, which runs exactly as B's app does).

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

/// What B's code tries against A's app: prints one JSON object, attack → "ok: ..." or
/// "refused: ERROR".
const SPY: &str = r##"import ctypes, json, os, sys
victim = json.loads(sys.argv[1])
pid = victim["pid"]
out = {}
def attempt(name, f):
    try:
        out[name] = "ok: " + str(f())[:300]
    except Exception as e:
        out[name] = "refused: " + type(e).__name__ + " " + str(e)[:100]
attempt("environ", lambda: open(f"/proc/{pid}/environ", "rb").read())
libc = ctypes.CDLL(None, use_errno=True)
def ptrace():
    if libc.ptrace(16, pid, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    libc.ptrace(17, pid, 0, 0)
    return "attached"
attempt("ptrace", ptrace)
def tamper():
    with open(victim["app"], "a") as f:
        f.write("# written by another deployment\n")
    return "written"
attempt("write_checkout", tamper)
attempt("read_checkout", lambda: open(victim["app"]).read())
attempt("signal", lambda: os.kill(pid, 0))
attempt("cwd", lambda: os.readlink(f"/proc/{pid}/cwd"))
attempt("fds", lambda: os.listdir(f"/proc/{pid}/fd"))
def seen():
    if str(pid) in os.listdir("/proc"):
        return "listed"
    raise LookupError("not in /proc")
attempt("listed", seen)
def poison():
    site = os.path.join(os.environ["VIRTUAL_ENV"], "lib")
    for root, _, files in os.walk(site):
        if "six.py" in files:
            with open(os.path.join(root, "six.py"), "a") as f:
                f.write("# poisoned\n")
            return "poisoned"
    raise LookupError("no six.py in the venv")
attempt("poison_venv", poison)
attempt("node_tmp", lambda: open(victim["node_tmp_file"]).read())
print(json.dumps(out))
"##;

/// Who the process is, as the app and its caches would ask.
const WHOAMI: &str = r#"import json, os, pwd, tempfile
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
  "user": pwd.getpwuid(os.getuid()).pw_name, "home": os.environ.get("HOME"),
  "data_dir": os.environ.get("DATA_DIR"), "tmpdir": tempfile.gettempdir(),
  "path": os.environ.get("PATH"), "umask": oct(os.umask(0o77)),
  "no_new_privs": [l for l in open("/proc/self/status") if l.startswith("NoNewPrivs")][0].split()[1],
  "agent_env": sorted(k for k in os.environ if k.startswith(("CARGO", "RUST", "PYENV")))}))
"#;

fn last_json(out: &Output) -> Value {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in the output\n{out}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{out}"))
}

fn uid_of(v: &Value) -> u64 {
    v["uid"].as_u64().unwrap_or_else(|| panic!("no uid in {v}"))
}

#[test]
fn two_owners_apps_cannot_see_touch_or_signal_each_other() {
    require_root("each deployment's own user needs the agent to run as root");
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "bob"], &[], "");
    let alice = s.project_as(Some("alice"));
    let bob = s.project_as(Some("bob"));
    alice.write("token.txt", "alice-s3cret-token-0451\n");
    alice
        .deployctl(&[
            "secret",
            "set",
            "TOKEN",
            "--owner",
            "user:alice",
            "--from-file",
            "token.txt",
        ])
        .ok();
    let repo = GitRepo::new();
    repo.write("spy.py", SPY);
    repo.write("whoami.py", WHOAMI);
    repo.commit_app("walls", None);
    let pip = ["--pip", "six==1.16.0", "--env-var", "APP_IMPORT=six"];
    let url = repo.url();
    let mut a_args = vec![
        "run",
        "a-app",
        "--repo",
        &url,
        "--command",
        "python3 app.py",
        "--port",
        "8000",
        "--secret",
        "TOKEN",
    ];
    a_args.extend_from_slice(&pip);
    alice.deployctl(&a_args).ok();
    let mut b_args = vec![
        "run",
        "b-app",
        "--repo",
        &url,
        "--command",
        "python3 app.py",
        "--port",
        "8001",
    ];
    b_args.extend_from_slice(&pip);
    bob.deployctl(&b_args).ok();

    let a = wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(20));
    let b = wait_for_json(&s.agent.app_url(8001, "/"), Duration::from_secs(20));
    let (a_uid, b_uid) = (uid_of(&a), uid_of(&b));
    assert_ne!(a_uid, 0, "A's app runs as root: {a}");
    assert_ne!(a_uid, b_uid, "two deployments share a user: {a} {b}");
    for uid in [a_uid, b_uid] {
        assert!((61184..=65519).contains(&uid), "uid {uid} outside app_uids");
    }
    // The environment is shared (same packages): one venv for both.
    assert_eq!(a["module_file"], b["module_file"], "{a} {b}");

    // Who B's code is: a real user with a home, no root, no agent environment.
    let who = last_json(
        &bob.deployctl(&["exec", "b-app", "--", "python3", "whoami.py"])
            .ok()
            .clone(),
    );
    assert_eq!(uid_of(&who), b_uid, "exec runs as the app's user: {who}");
    assert_eq!(who["user"], format!("deploy-app-{b_uid}"), "{who}");
    assert_eq!(who["home"], who["data_dir"], "{who}");
    let groups = who["groups"].as_array().cloned().unwrap_or_default();
    assert!(
        groups.iter().all(|g| g.as_u64() == Some(b_uid)),
        "supplementary groups other than its own: {who}"
    );
    assert_eq!(who["tmpdir"], "/tmp", "{who}");
    assert_eq!(who["umask"], "0o77", "{who}");
    assert_eq!(who["no_new_privs"], "1", "{who}");
    assert_eq!(
        who["agent_env"],
        serde_json::json!([]),
        "the agent's environment leaks: {who}"
    );
    let path = who["path"].as_str().unwrap_or_default();
    assert!(
        !path.contains("/root"),
        "root's tool directories on PATH: {path}"
    );

    // The attacks, from B's code, against A's app.
    let a_pid = a["pid"].as_u64().expect("A's pid");
    let a_app = s.agent.deployment_dir("a-app").join("releases/1/app.py");
    let node_tmp = tempfile::NamedTempFile::new_in("/tmp").expect("a file in the node's /tmp");
    std::fs::write(node_tmp.path(), "node-tmp-content").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(node_tmp.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let victim = serde_json::json!({
        "pid": a_pid, "app": a_app, "node_tmp_file": node_tmp.path(),
    })
    .to_string();
    let out = bob.deployctl(&["exec", "b-app", "--", "python3", "spy.py", &victim]);
    let got = last_json(&out.ok().clone());
    for attack in [
        "environ",
        "ptrace",
        "write_checkout",
        "read_checkout",
        "signal",
        "cwd",
        "fds",
        "listed",
        "poison_venv",
        "node_tmp",
    ] {
        let result = got[attack].as_str().unwrap_or_default();
        assert!(
            result.starts_with("refused"),
            "{attack} succeeded: {result}\n{got}"
        );
    }
    assert!(!out.all().contains("alice-s3cret-token-0451"));
    // A still serves, untouched, as itself.
    let again = wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(5));
    assert_eq!(again["pid"], a["pid"]);
    let code = std::fs::read_to_string(&a_app).unwrap();
    assert!(
        !code.contains("another deployment"),
        "A's checkout was written"
    );

    // B's own code still may write where it works: its checkout, DATA_DIR and /tmp.
    let out = bob.deployctl(&[
        "exec", "b-app", "--", "sh", "-c",
        "echo x > made-here.txt && echo y > \"$DATA_DIR/kept.txt\" && echo z > /tmp/t.txt && cat made-here.txt \"$DATA_DIR/kept.txt\" /tmp/t.txt",
    ]);
    out.ok().mentions("x\ny\nz");
    // Its /tmp is its own directory on the node.
    assert!(s.agent.deployment_dir("b-app").join("tmp/t.txt").is_file());

    // remove frees B's user.
    bob.deployctl(&["remove", "b-app"]).ok();
    let users = app_users_of(&s.agent.data_dir);
    assert!(
        !users.iter().any(|(_, uid)| u64::from(*uid) == b_uid),
        "B's user is still there: {users:?}"
    );
    assert!(
        users.iter().any(|(_, uid)| u64::from(*uid) == a_uid),
        "{users:?}"
    );
}

#[test]
fn without_users_a_root_agent_still_runs_apps_as_their_own_users() {
    require_root("the agent must run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("alone", None);
    for (name, port) in [("one", "8000"), ("two", "8001")] {
        project
            .run_on_port(name, &repo.url(), "python3 app.py", port, &[])
            .ok();
    }
    let one = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    let two = wait_for_json(&agent.app_url(8001, "/"), Duration::from_secs(10));
    assert_ne!(uid_of(&one), 0, "{one}");
    assert_ne!(uid_of(&one), uid_of(&two));
    // Its identity stays across a redeploy and an agent restart.
    let rec = agent.record("one").expect("a record");
    let uid = rec["identity"]["uid"]
        .as_u64()
        .expect("an identity in the record");
    assert_eq!(uid, uid_of(&one));
    project
        .run_on_port(
            "one",
            &repo.url(),
            "python3 app.py",
            "8000",
            &["--env-var", "X=1"],
        )
        .ok();
    let again = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(again["release"], "2");
    assert_eq!(uid_of(&again), uid);
}

#[test]
fn an_agent_that_is_not_root_runs_apps_as_itself() {
    require_root("the test gives the agent another user");
    let ip = loopback();
    // nobody: an unprivileged agent, as on a laptop; its data directory in /tmp.
    let agent = Agent::start_as_user(&ip, 65534, 65534);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("mine", None);
    // Its own repository, as on a laptop (git refuses one another user owns).
    let chowned = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(repo.path())
        .status()
        .expect("running chown");
    assert!(chowned.success());
    project
        .run_on_port("mine", &repo.url(), "python3 app.py", "8000", &[])
        .ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(uid_of(&served), 65534, "{served}");
    assert!(app_users_of(&agent.data_dir).is_empty(), "a user was made");
}
