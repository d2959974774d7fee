//! The agent's config file (TOML): it sets what the flags set, flags override it, unknown
//! keys are refused by name. And log rotation, which it configures: a chatty app cannot
//! fill the disk.

use std::process::{Command, Stdio};
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn config_file_and_flags() {
    // The file's app_host is overridden by the --app-host flag Agent::start_with passes;
    // its keep_releases applies (nothing overrides it).
    let ip = loopback();
    let agent = Agent::start_with(
        &ip,
        "app_host = \"127.0.0.99\"\nkeep_releases = 1\nlog_format = \"json\"\n",
        &[],
    );
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("configured", Some("v1"));
    let out = project.run_app(ENV, "web", &repo.url(), "v1", &[]);
    out.ok().mentions(&format!("http://{ip}:8000"));
    assert!(
        agent
            .stderr()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("deploy-agent listening")),
        "log_format = \"json\" from the file applies:\n{}",
        tail(&agent.stderr(), 20)
    );
    project.deployctl(&["run", "--load", "web"]).ok();
    // Old releases are pruned right after the deploy has answered.
    let releases = agent.deployment_dir("web").join("releases");
    let kept = || -> Vec<_> { std::fs::read_dir(&releases).unwrap().flatten().collect() };
    assert!(
        wait_until(Duration::from_secs(10), || kept().len() == 1),
        "keep_releases = 1: {:?}",
        kept()
    );

    // Unknown keys and bad values: the agent refuses to start and names them.
    let dir = tempfile::tempdir().unwrap();
    for (toml, needle) in [
        (
            "listen = \"127.0.0.1:0\"\nlisten_address = \"x\"\n",
            "listen_address",
        ),
        ("install_timeout = \"soon\"\n", "install_timeout"),
        ("http_listen = 7071\n", "http_listen"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(agent_bin())
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .output()
            .expect("running deploy-agent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml:?} was accepted");
        assert!(
            stderr.contains(needle),
            "{toml:?}: the error does not name {needle}: {stderr}"
        );
        assert!(
            stderr.contains("bad.toml"),
            "the error names the file: {stderr}"
        );
    }
}

#[test]
fn chatty_app_logs_are_rotated() {
    let ip = loopback();
    let agent = Agent::start_with(&ip, "log_max_bytes = 65536\nlog_keep = 2\n", &[]);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("chatty", Some("v1"));
    project
        .deployctl(&[
            "run",
            "chatty",
            "--env",
            ENV,
            "--repo",
            &repo.url(),
            "--ref",
            "v1",
            "--command",
            "python3 app.py",
            "--env-var",
            "APP_CHATTY=1",
            "--health-path",
            "/health",
        ])
        .ok();
    let logs = agent.deployment_dir("chatty").join("logs");
    let rotated = |n: u32| logs.join(format!("app.log.{n}"));
    assert!(
        wait_until(Duration::from_secs(30), || rotated(2).is_file()),
        "app.log was not rotated twice within 30 s: {:?}",
        std::fs::read_dir(&logs).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    // Keep going a while: never more than log_keep rotated files, and bounded sizes.
    let mut biggest = 0;
    wait_until(Duration::from_secs(3), || {
        assert!(!rotated(3).exists(), "log_keep = 2, yet app.log.3 exists");
        let size = std::fs::metadata(logs.join("app.log"))
            .map(|m| m.len())
            .unwrap_or(0);
        biggest = biggest.max(size);
        false
    });
    // The app writes ~100 KB/s at most and its log is looked at as it is written.
    assert!(biggest < 2 * 1024 * 1024, "app.log grew to {biggest} bytes");
    // The app kept writing into the rotated file all along, at its new start.
    let text = std::fs::read_to_string(logs.join("app.log")).unwrap_or_default();
    assert!(
        text.is_empty() || text.starts_with("chatty line"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(
            logs.join("app.log")
        )
        .unwrap_or_default()
        .contains("chatty line")),
        "the app still writes to app.log after rotation"
    );
    // The agent is still healthy with the app.
    let (_, dep) = project.status_json("chatty");
    assert_eq!(dep["instances"][0]["state"], "healthy", "{dep:#}");
}

#[test]
fn systemd_notify_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let ip = loopback();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("binding a notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut agent = Command::new(agent_bin())
        .args([
            "--listen",
            &format!("{ip}:0"),
            "--http-listen",
            &format!("{ip}:0"),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.stderr")).unwrap())
        .spawn()
        .expect("starting deploy-agent");
    let mut buf = [0u8; 512];
    let ready = socket
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let stopping = socket
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    let mut status = None;
    wait_until(Duration::from_secs(15), || {
        status = agent.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    assert!(
        ready.as_deref().is_ok_and(|m| m.contains("READY=1")),
        "{ready:?}"
    );
    assert!(
        stopping.as_deref().is_ok_and(|m| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: a clean exit, got {status:?}"
    );
}

/// `deploy-agent --help` explains every key of the example config (scripts/config.toml).
#[test]
fn help_explains_every_config_key() {
    let out = Command::new(agent_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/config.toml"),
    )
    .unwrap();
    let keys: Vec<&str> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(keys.len() > 15, "{keys:?}");
    for key in keys {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(key) || l.contains(&format!(", {key} ="))),
            "--help does not explain {key}:\n{help}"
        );
    }
}
