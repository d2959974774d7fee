//! `http://` to an agent that serves TLS: the error says to use `https://` (not only what
//! HTTP/2 saw of the TLS alert).

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
