//! A deployment's ports: its private port is served only while its own user listens there
//! (another deployment that binds it while it is down gets no request), and the ports it
//! may ask for are the agent's `ports` (none below 1024).

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

/// B's code waits for A's private port to be free, binds it and serves what it can.
const STEAL: &str = r#"import json, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
deadline = time.time() + 15
while True:
    try:
        s.bind((host, port))
        break
    except OSError:
        if time.time() > deadline:
            print(json.dumps({"bound": False})); sys.exit(0)
        time.sleep(0.01)
s.listen(64)
s.settimeout(0.2)
print("bound", flush=True)
seen, end = 0, time.time() + 4
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(0.5)
    try:
        data = c.recv(4096)
        if data:
            seen += 1
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nstolen")
    except OSError:
        pass
    c.close()
print(json.dumps({"bound": True, "requests": seen}))
"#;

/// Whether a process whose command line mentions `what` runs (the test is root: it sees all).
fn running(what: &[&str]) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let line = String::from_utf8_lossy(&c).replace('\0', " ");
                what.iter().all(|w| line.contains(w))
            })
        })
}

/// SIGKILLs deployment `name`'s app (its process group and its pid `pid`).
fn kill_app(agent: &Agent, name: &str, pid: i32) {
    let leader = agent
        .record(name)
        .and_then(|r| r["pid"].as_u64())
        .unwrap_or(0) as i32;
    for p in [leader, pid].into_iter().filter(|p| *p > 1) {
        let p = nix::unistd::Pid::from_raw(p);
        let _ = nix::sys::signal::killpg(p, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn another_deployment_on_a_free_private_port_gets_no_traffic() {
    require_root("each deployment's own user needs the agent to run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.write("steal.py", STEAL);
    repo.commit_app("ports", None);
    let url = repo.url();
    project
        .run_on_port(
            "a",
            &url,
            "python3 app.py",
            "8000",
            &["--restart", "never", "--hold-timeout", "1s"],
        )
        .ok();
    project
        .run_on_port("b", &url, "python3 app.py", "8001", &[])
        .ok();
    let a = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    let private = agent.record("a").expect("a's record")["private_port"]
        .as_u64()
        .expect("a private port")
        .to_string();
    // B's code waits for the port; A goes down.
    let a_pid = a["pid"].as_u64().expect("A's pid") as i32;
    let (out, answers) = std::thread::scope(|scope| {
        let thief = scope.spawn(|| {
            project.deployctl(&["exec", "b", "--", "python3", "steal.py", &ip, &private])
        });
        assert!(wait_until(Duration::from_secs(10), || running(&[
            "steal.py", &ip, &private
        ])));
        kill_app(&agent, "a", a_pid);
        // Requests to A's public port while B holds A's private port: none reaches B.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut answers = Vec::new();
        while std::time::Instant::now() < deadline {
            let got = http_get_with(
                &agent.app_url(8000, "/"),
                &[("Authorization", "Bearer a-users-token")],
            );
            answers.push(format!("{got:?}"));
        }
        (thief.join().expect("the thief's thread"), answers)
    });
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default()
        .to_string();
    let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        report["bound"], true,
        "B never got the port: the test proves nothing\n{out}"
    );
    assert_eq!(
        report["requests"], 0,
        "B's listener got A's requests\n{out}"
    );
    assert!(
        answers.iter().all(|a| !a.contains("stolen")),
        "a client got B's answer on A's port: {answers:?}"
    );
}

#[test]
fn a_port_below_1024_is_refused_naming_the_setting() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("low", None);
    let out = project.run_on_port("low", &repo.url(), "python3 app.py", "80", &[]);
    out.refused_before_anything_ran(&agent, "low")
        .mentions("port 80")
        .mentions("ports");
}

#[test]
fn an_app_whose_private_port_was_taken_moves_to_another() {
    require_root("each deployment's own user needs the agent to run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.write("steal.py", STEAL);
    repo.commit_app("moved", None);
    let url = repo.url();
    for (name, port) in [("a", "8000"), ("b", "8001")] {
        project
            .run_on_port(name, &url, "python3 app.py", port, &[])
            .ok();
    }
    let a = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    let taken = agent.record("a").expect("a's record")["private_port"]
        .as_u64()
        .expect("a private port");
    let a_pid = a["pid"].as_u64().expect("A's pid") as i32;
    let private = taken.to_string();
    let (out, moved) = std::thread::scope(|scope| {
        let thief = scope.spawn(|| {
            project.deployctl(&["exec", "b", "--", "python3", "steal.py", &ip, &private])
        });
        // A dies while B waits for its port; the agent restarts A, which cannot bind it.
        assert!(wait_until(Duration::from_secs(10), || running(&[
            "steal.py", &ip, &private
        ])));
        kill_app(&agent, "a", a_pid);
        // A serves again, from another private port.
        let mut now = None;
        let moved = wait_until(Duration::from_secs(20), || {
            now = agent.record("a").and_then(|r| r["private_port"].as_u64());
            now.is_some_and(|p| p != taken)
                && get_json(&agent.app_url(8000, "/")).is_some_and(|v| v["marker"] == "moved")
        });
        (thief.join().expect("the thief's thread"), (moved, now))
    });
    assert!(
        moved.0,
        "A did not move off its taken port {taken} (now {:?})\n{}",
        moved.1,
        tail(&agent.stderr(), 40)
    );
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let report: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        report["requests"], 0,
        "B's listener got A's requests\n{out}"
    );
    // Why it moved is in the agent's log.
    assert!(
        agent.stderr().contains("another user"),
        "{}",
        tail(&agent.stderr(), 40)
    );
}
