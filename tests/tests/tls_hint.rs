//! `http://` to an agent that serves TLS: the error says to use `https://` (not only what
//! HTTP/2 saw of the TLS alert); a token is never sent in clear to another machine.

use std::path::Path;
use std::time::Duration;

use deployctl_e2e::*;

#[test]
fn plain_http_to_a_tls_agent_says_to_use_https() {
    let ip = loopback();
    let s = secure_agent(&ip, &[], &[], "");
    let p = Project::new();
    p.deployctl(&[
        "declare",
        "env",
        "agent",
        "plain",
        "--address",
        &format!("http://{}", s.agent.grpc),
    ])
    .ok();
    let out = p.deployctl(&["nodes", "--env", "plain"]);
    assert_ne!(out.code, 0, "{out}");
    out.mentions("use https://");
}

/// The address a non-loopback interface of this machine has (the one a packet to a
/// documentation address would leave from; nothing is sent), if any.
fn own_non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn a_token_is_never_sent_in_clear_to_another_machine() {
    // A listener on this machine's own non-loopback address: it sees whether anything
    // connects. (Without such an interface, a documentation address nobody answers.)
    let (listener, address) = match own_non_loopback_ip() {
        Some(ip) => {
            let l = std::net::TcpListener::bind((ip, 0)).expect("bind a non-loopback address");
            l.set_nonblocking(true).unwrap();
            let addr = l.local_addr().unwrap();
            (Some(l), format!("http://{addr}"))
        }
        None => (None, "http://192.0.2.1:7070".to_string()),
    };
    let project = Project::new();
    project.write("prod.token", "dat_do-not-send-me\n");
    let token = project.path().join("prod.token");
    let token = token.to_string_lossy();

    // Declaring it is refused, nothing written.
    let out = project.deployctl_timeout(
        &[
            "declare",
            "env",
            "agent",
            "prod",
            "--address",
            &address,
            "--token-file",
            &token,
        ],
        Duration::from_secs(10),
    );
    out.expect_code(2)
        .mentions("env prod")
        .mentions(&address)
        .mentions("unencrypted")
        .mentions("https://")
        .mentions("ca_file");
    assert!(!Path::new(&project.path().join("prod.env.yaml")).exists());

    // A declaration written by hand is refused when used, before connecting.
    project.write(
        "prod.env.yaml",
        &format!("object_type: env\ntype: agent\naddresses: [{address}]\ntoken_file: {token}\n"),
    );
    let repo = GitRepo::new();
    repo.commit_app("never", None);
    let url = repo.url();
    for args in [
        vec!["nodes", "--env", "prod"],
        vec!["secret", "list", "--env", "prod"],
        vec![
            "run",
            "svc",
            "--env",
            "prod",
            "--repo",
            &url,
            "--command",
            "python3 app.py",
        ],
    ] {
        let out = project.deployctl_timeout(&args, Duration::from_secs(10));
        out.expect_code(2)
            .mentions("env prod")
            .mentions(&address)
            .mentions("https://")
            .mentions("ca_file");
    }
    assert!(!project.path().join("svc.deploy.yaml").exists());
    if let Some(l) = listener {
        match l.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("something connected to {address}: {other:?}"),
        }
    }

    // On loopback the token stays on the machine: the command works, with one warning.
    let ip = loopback();
    let agent = Agent::start(&ip);
    project.write(
        "dev.env.yaml",
        &format!(
            "object_type: env\ntype: agent\naddresses: [{}]\ntoken_file: {token}\n",
            agent.address()
        ),
    );
    let out = project.deployctl(&["nodes", "--env", "dev"]);
    out.ok();
    assert_eq!(
        out.stderr.matches("warning:").count(),
        1,
        "one warning per command\n{out}"
    );
    out.mentions("env dev").mentions("unencrypted");
    project.write(".deployctl.yaml", "core:\n  default_env: dev\n");
    let out = project.deployctl(&["status", "--output", "json"]);
    assert_eq!(out.stderr.matches("unencrypted").count(), 1, "{out}");
    out.json();
}
