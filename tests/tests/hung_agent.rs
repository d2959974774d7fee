//! An agent that stops answering (here: `SIGSTOP`, so the kernel still accepts its
//! connections and nothing ever comes back) costs a command seconds, not forever: the other
//! agents' results are printed, the hung one is named with its address, exit 1.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deployctl_e2e::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Well under a minute: the default timeout is 5s per agent, and keepalive pings find a
/// hang mid-stream within about 10s. Before the fix these commands never returned.
const BOUND: Duration = Duration::from_secs(30);

/// A `SIGSTOP`ped agent; `SIGCONT` when dropped (also when the test fails), so the agent
/// can be killed and cleaned up like any other.
struct Stopped(u32);

impl Stopped {
    fn stop(agent: &Agent) -> Stopped {
        let pid = agent.pid().expect("the agent runs");
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP the agent");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

/// The lines of `text` that name `agent`.
fn lines_naming<'a>(text: &'a str, agent: &Agent) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.contains(&agent.address()))
        .collect()
}

#[test]
fn a_stopped_agent_is_named_and_the_others_answer() {
    let ips = [loopback(), loopback(), loopback()];
    let a = Agent::start(&ips[0]);
    let b = Agent::start(&ips[1]);
    let c = Agent::start(&ips[2]);
    let project = Project::for_agents("fleet", &[&a, &b, &c]);

    // Nothing deployed yet: the agent that does not answer may run something; it is named.
    let stopped = Stopped::stop(&b);
    let out = project.deployctl_timeout(&["status"], BOUND);
    out.expect_code(1).mentions("no deployments");
    let hung = lines_naming(&out.stdout, &b).join("\n");
    assert!(hung.contains("did not answer within 5s"), "{out}");
    let out = project.deployctl_timeout(&["status", "--output", "json"], BOUND);
    out.expect_code(1);
    assert_eq!(
        out.json()["unreachable_agents"][0]["agent"],
        b.address().as_str(),
        "{out}"
    );
    drop(stopped);

    let repo = GitRepo::new();
    repo.commit_app("hung", None);
    let url = repo.url();
    let deploy = [
        "run",
        "model",
        "--repo",
        &url,
        "--command",
        "python3 app.py",
        "--health-path",
        "/health",
    ];
    project.deployctl(&deploy).ok();

    let stopped = Stopped::stop(&b);

    // status: the two healthy instances, the stopped agent named with the reason.
    let out = project.deployctl_timeout(&["status"], BOUND);
    out.expect_code(1);
    for healthy in [&a, &c] {
        let rows = lines_naming(&out.stdout, healthy);
        assert!(rows.iter().any(|l| l.contains("healthy")), "{out}");
    }
    let hung = lines_naming(&out.stdout, &b).join("\n");
    assert!(hung.contains("unreachable"), "{out}");
    assert!(hung.contains("did not answer within 5s"), "{out}");

    let out = project.deployctl_timeout(&["status", "model", "--output", "json"], BOUND);
    out.expect_code(1);
    let v = out.json();
    let instances = v["deployments"][0]["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(instances.len(), 3, "{out}");
    for inst in &instances {
        let expected = if inst["agent"] == b.address().as_str() {
            "unreachable"
        } else {
            "healthy"
        };
        assert_eq!(inst["state"], expected, "{inst}");
    }

    // nodes: two reachable, one named.
    let out = project.deployctl_timeout(&["nodes"], BOUND);
    out.expect_code(1);
    for up in [&a, &c] {
        assert!(
            lines_naming(&out.stdout, up)
                .iter()
                .any(|l| l.contains("yes")),
            "{out}"
        );
    }
    let hung = lines_naming(&out.stdout, &b).join("\n");
    assert!(hung.contains("NO"), "{out}");
    assert!(hung.contains("did not answer within 5s"), "{out}");

    // A shorter timeout where the user wants one.
    let out = project.deployctl_timeout(&["nodes", "--timeout", "1s"], BOUND);
    out.expect_code(1).mentions("did not answer within 1s");

    // run: deploys where it can, names the agent that did not take the request.
    let out = project.deployctl_timeout(&deploy, BOUND);
    out.expect_code(1);
    for healthy in [&a, &c] {
        assert!(
            lines_naming(&out.stdout, healthy)
                .iter()
                .any(|l| l.contains("release 2") && l.contains("is live")),
            "{out}"
        );
    }
    let hung = lines_naming(&out.stderr, &b).join("\n");
    assert!(hung.contains("did not answer within 5s"), "{out}");
    out.mentions("1 of 3 instances failed");

    // logs: the others' output, the stopped one named.
    let out = project.deployctl_timeout(&["logs", "model"], BOUND);
    out.expect_code(1);
    for up in [&a, &c] {
        assert!(
            lines_naming(&out.stdout, up)
                .iter()
                .any(|l| l.contains("app hung listening")),
            "{out}"
        );
    }
    assert!(
        lines_naming(&out.stderr, &b)
            .iter()
            .any(|l| l.contains("did not answer within 5s")),
        "{out}"
    );

    // remove: done where it can be, the state entry kept for the agent that did not answer.
    let out = project.deployctl_timeout(&["remove", "model"], BOUND);
    out.expect_code(1).mentions("the state entry is kept");
    assert!(!lines_naming(&out.stdout, &a).is_empty(), "{out}");
    assert!(
        lines_naming(&out.stderr, &b)
            .iter()
            .any(|l| l.contains("did not answer within") || l.contains("stopped answering")),
        "{out}"
    );
    drop(stopped);
}

/// `deployctl ARGS...` in the background, output to files in the project.
fn spawn_deployctl(project: &Project, args: &[&str], name: &str) -> Child {
    Command::new(deployctl_bin())
        .arg("--project")
        .arg(project.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(project.path().join(format!("{name}.out"))).unwrap())
        .stderr(fs::File::create(project.path().join(format!("{name}.err"))).unwrap())
        .spawn()
        .expect("starting deployctl")
}

/// Waits (at most `within`) for `child` to exit; kills it and fails the test otherwise.
fn exit_code_within(child: &mut Child, within: Duration, what: &str) -> i32 {
    let mut status = None;
    let done = wait_until(within, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not return within {within:?}");
    }
    status.and_then(|s| s.code()).unwrap_or(-1)
}

#[test]
fn an_agent_that_hangs_mid_stream_is_found_by_keepalive_pings() {
    let ips = [loopback(), loopback()];
    let a = Agent::start(&ips[0]);
    let b = Agent::start(&ips[1]);
    let project = Project::for_agents("fleet", &[&a, &b]);
    let shared = shared_dir();
    let sync = shared.path().to_path_buf();
    let repo = GitRepo::new();
    repo.commit_app("steady", None);
    // The start script waits for the test, the way a slow step (a model download) keeps a
    // deploy's stream silent for a long time.
    repo.write_executable(
        "slow.sh",
        "#!/bin/sh\ntouch \"$SYNC/started.$$\"\nwhile [ ! -e \"$SYNC/go\" ]; do sleep 0.1; done\n",
    );
    repo.commit("a start script that waits");
    let url = repo.url();
    let sync_var = format!("SYNC={}", sync.display());
    let mut deploy = vec![
        "run",
        "model",
        "--repo",
        &url,
        "--command",
        "python3 app.py",
        "--health-path",
        "/health",
    ];
    project.deployctl(&deploy).ok();

    // logs -f follows for ever; an agent that stops answering is named while the other one
    // is still followed.
    let mut follow = spawn_deployctl(&project, &["logs", "model", "-f"], "follow");
    let out_path = project.path().join("follow.out");
    let err_path = project.path().join("follow.err");
    let both = wait_until(BOUND, || {
        let out = fs::read_to_string(&out_path).unwrap_or_default();
        [&a, &b].iter().all(|x| !lines_naming(&out, x).is_empty())
    });
    assert!(both, "logs -f shows both agents' output");
    let stopped = Stopped::stop(&b);
    let named = wait_until(BOUND, || {
        let err = fs::read_to_string(&err_path).unwrap_or_default();
        lines_naming(&err, &b)
            .iter()
            .any(|l| l.contains("stopped answering"))
    });
    let still_following = follow.try_wait().ok().flatten().is_none();
    let _ = follow.kill();
    let _ = follow.wait();
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    eprintln!("$ deployctl logs model -f\n--- stderr ---\n{err}");
    assert!(named, "logs -f names the hung agent; stderr:\n{err}");
    assert!(still_following, "logs -f keeps following the other agent");
    drop(stopped);

    // A deploy whose agent hangs during a silent step.
    deploy.extend(["--start-script", "slow.sh", "--env-var", &sync_var]);
    let mut run = spawn_deployctl(&project, &deploy, "run");
    let both_started = wait_until(BOUND, || {
        fs::read_dir(&sync).map(|d| d.count()).unwrap_or(0) >= 2
    });
    assert!(both_started, "both agents run the start script");
    let stopped = Stopped::stop(&b);
    // Not synchronisation: the step stays silent on both agents for longer than a ping
    // interval, and only the stopped agent may be taken for hung.
    std::thread::sleep(Duration::from_secs(8));
    fs::write(sync.join("go"), "").unwrap();
    let code = exit_code_within(
        &mut run,
        BOUND,
        "deployctl run with an agent hung mid-deploy",
    );
    let out = fs::read_to_string(project.path().join("run.out")).unwrap_or_default();
    let err = fs::read_to_string(project.path().join("run.err")).unwrap_or_default();
    let shown = format!("--- stdout ---\n{out}\n--- stderr ---\n{err}");
    eprintln!("$ deployctl {}\n{shown}", deploy.join(" "));
    assert_eq!(code, 1, "{shown}");
    assert!(
        lines_naming(&out, &a).iter().any(|l| l.contains("is live")),
        "{shown}"
    );
    assert!(
        lines_naming(&err, &b)
            .iter()
            .any(|l| l.contains("stopped answering")),
        "{shown}"
    );
    drop(stopped);
}

/// In a fresh directory with no agent running, `status` says so and how to start one, and
/// exits 1 (not "no deployments" and 0).
#[test]
fn status_with_no_agent_running_says_how_to_start_one() {
    let ip = loopback();
    let project = Project::new();
    let out = std::process::Command::new(deployctl_bin())
        .arg("--project")
        .arg(project.path())
        .arg("status")
        .env("DEPLOYCTL_LOCAL_ADDRESS", format!("{ip}:7070"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("nothing listens there"), "{stdout}");
    assert!(
        stdout.contains("`deployctl run` starts the local one"),
        "{stdout}"
    );
}
