//! The agent `deployctl` starts by itself for the built-in env `local`: `local status`
//! finds it, `local stop` stops it, and the `DEPLOYCTL_LOCAL_*` variables place it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use deployctl_e2e::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Kills whatever runs from the data directory (the agent, its node proxy, apps) when the
/// test ends, however it ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(procs) = fs::read_dir("/proc") else {
            return;
        };
        for e in procs.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cwd = fs::read_link(e.path().join("cwd")).unwrap_or_default();
            let mine = String::from_utf8_lossy(&cmdline).contains(&*self.0.to_string_lossy())
                || cwd.starts_with(&self.0);
            if mine && pid > 1 && pid as u32 != std::process::id() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn deployctl(project: &Path, ip: &str, data: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(deployctl_bin())
        .arg("--project")
        .arg(project)
        .args(args)
        .env("DEPLOYCTL_LOCAL_ADDRESS", format!("{ip}:7070"))
        .env("DEPLOYCTL_LOCAL_DATA_DIR", data)
        .env("DEPLOYCTL_AGENT_BIN", agent_bin())
        .env("NO_COLOR", "1")
        .current_dir(project)
        .output()
        .unwrap();
    let text = format!(
        "$ deployctl {args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn local_status_and_stop_find_the_auto_started_agent() {
    let ip = loopback();
    let project = Project::new();
    let data = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(data.path().to_path_buf());
    let run = |args: &[&str]| deployctl(project.path(), &ip, data.path(), args);

    let (code, text) = run(&["local", "status"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("No local agent answers at {ip}:7070")),
        "{text}"
    );

    let repo = GitRepo::new();
    repo.commit_app("local", Some("v1"));
    let (code, text) = run(&[
        "run",
        "web",
        "--repo",
        &repo.url(),
        "--ref",
        "v1",
        "--command",
        "python3 app.py",
        "--health-path",
        "/health",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("started a local deploy-agent"), "{text}");

    let (code, text) = run(&["local", "status"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("The local agent answers at {ip}:7070 (pid ")),
        "{text}"
    );
    assert!(text.contains("1 deployment(s)"), "{text}");
    assert!(text.contains(&data.path().display().to_string()), "{text}");
    let (code, json) = run(&["local", "status", "--output", "json"]);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
    let pid = v["pids"][0].as_u64().expect("the agent's pid") as u32;
    assert!(pid_alive(pid));

    run(&["remove", "web"]);
    let (code, text) = run(&["local", "stop"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Stopped the local agent"), "{text}");
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pid)));
    let (code, text) = run(&["local", "status"]);
    assert_eq!(code, 1, "{text}");
    let (code, text) = run(&["local", "stop"]);
    assert_eq!(code, 0, "stopping what does not run is no error\n{text}");
    assert!(text.contains("No local agent runs"), "{text}");
}

/// After `local stop` (its apps still run): `status`, `logs` and `nodes` do not start an
/// agent for a read-only look; they exit 1 naming the command that does, `local start`,
/// which brings it back as printed. Commands that change something (`restart`, `remove`,
/// like `run`) start it themselves.
#[test]
fn after_local_stop_every_command_starts_the_agent_or_names_local_start() {
    let ip = loopback();
    let project = Project::new();
    let data = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(data.path().to_path_buf());
    let run = |args: &[&str]| deployctl(project.path(), &ip, data.path(), args);
    let repo = GitRepo::new();
    repo.commit_app("local", Some("v1"));
    let (code, text) = run(&[
        "run",
        "web",
        "--repo",
        &repo.url(),
        "--ref",
        "v1",
        "--command",
        "python3 app.py",
        "--health-path",
        "/health",
    ]);
    assert_eq!(code, 0, "{text}");

    let (code, text) = run(&["local", "stop"]);
    assert_eq!(code, 0, "{text}");
    for args in [
        &["status"][..],
        &["status", "web"],
        &["logs", "web"],
        &["nodes"],
    ] {
        let (code, text) = run(args);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("`deployctl local start`"), "{text}");
        assert!(!text.contains("started a local deploy-agent"), "{text}");
    }
    let (code, text) = run(&["local", "status"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("`deployctl local start`"), "{text}");

    // As printed.
    let (code, text) = run(&["local", "start"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("started a local deploy-agent"), "{text}");
    assert!(
        text.contains(&format!("The local agent answers at {ip}:7070 (pid ")),
        "{text}"
    );
    let (code, text) = run(&["local", "start"]);
    assert_eq!(code, 0, "a running agent is left as it is\n{text}");
    assert!(!text.contains("started a local deploy-agent"), "{text}");
    assert!(
        wait_until(Duration::from_secs(20), || run(&["status", "web"]).0 == 0),
        "the agent took its app back"
    );
    let (code, text) = run(&["logs", "web", "-n", "5"]);
    assert_eq!(code, 0, "{text}");

    // Changes start it, like `run`.
    let (code, text) = run(&["local", "stop"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["restart", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("started a local deploy-agent"), "{text}");
    let (code, text) = run(&["local", "stop"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["remove", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("started a local deploy-agent"), "{text}");
    let (code, text) = run(&["status", "web"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not found"), "{text}");
    run(&["local", "stop"]);
}

/// The node proxy's pid, from the pid file in the data directory `data`, if there is one.
fn proxy_pid(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("proxy/proxy.pid"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
}

/// A node with no deployment left runs no node proxy: removing the last one stops it (the
/// next deploy starts it again). `local stop` says which deployments the proxy keeps
/// serving and how to stop it, and so does the agent's log; with none left, `local stop`
/// stops a proxy it finds.
#[test]
fn the_node_proxy_stops_with_the_last_deployment_and_local_stop_says_what_it_serves() {
    let ip = loopback();
    let project = Project::new();
    let data = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(data.path().to_path_buf());
    let run = |args: &[&str]| deployctl(project.path(), &ip, data.path(), args);
    let repo = GitRepo::new();
    repo.commit_app("local", Some("v1"));
    let deploy = || {
        let (code, text) = run(&[
            "run",
            "web",
            "--repo",
            &repo.url(),
            "--ref",
            "v1",
            "--command",
            "python3 app.py",
            "--health-path",
            "/health",
        ]);
        assert_eq!(code, 0, "{text}");
    };
    deploy();
    let first = proxy_pid(data.path()).expect("the node proxy's pid file");
    assert!(pid_alive(first));

    let (code, text) = run(&["remove", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(first)),
        "the node proxy (pid {first}) still runs with no deployment left"
    );
    assert_eq!(proxy_pid(data.path()), None, "its pid file stays");

    // The next deploy starts it again; the agent stops, the proxy keeps serving.
    deploy();
    let second = proxy_pid(data.path()).expect("the node proxy's pid file");
    assert!(second != first && pid_alive(second));
    let (code, text) = run(&["local", "stop"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "The node proxy (pid {second}) keeps serving web on {ip}:8000; `deployctl remove web`"
        )),
        "{text}"
    );
    let log = fs::read_to_string(data.path().join("agent.log")).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "the node proxy (pid {second}) keeps serving 1 deployment after the agent stops: web on {ip}:8000"
        )) && log.contains("proxy/proxy.pid"),
        "the agent's log does not say what the proxy keeps serving:\n{log}"
    );
    assert!(pid_alive(second));
    let answer = http_get(&format!("http://{ip}:8000/health"));
    assert_eq!(answer, Some((200, "ok".into())));

    // As printed: removing it (the agent starts again) stops the proxy.
    let (code, text) = run(&["remove", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(second)),
        "the node proxy (pid {second}) still runs after `remove web`"
    );

    // A proxy left serving nothing (by an agent killed at the wrong moment, or an older
    // one): `local stop` stops it, saying so.
    let dir = data.path().join("proxy");
    let mut stale = Command::new(agent_bin())
        .arg("proxy")
        .arg("--control")
        .arg(dir.join("control.sock"))
        .arg("--routes")
        .arg(dir.join("routes.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = stale.id();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start_time = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    fs::write(dir.join("proxy.pid"), format!("{pid} {start_time}\n")).unwrap();
    let (code, text) = run(&["local", "stop"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "Stopped the node proxy (pid {pid}) too: no deployment is left"
        )),
        "{text}"
    );
    assert!(wait_until(Duration::from_secs(5), || stale
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
}
