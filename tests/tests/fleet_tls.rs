//! A fleet of agents that serve TLS and need a token: each registers its `https://` address,
//! and a fleet env reaches it with the env's CA and token, as a typed env would.

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

#[test]
fn a_fleet_of_tls_agents_is_reached_over_https_with_the_envs_ca_and_token() {
    let etcd = Etcd::start(&loopback());
    let uri = etcd.uri("e2e-tls");
    let config = format!("register = \"{uri}\"\nlabels = {{zone = \"secure\"}}\n");
    let secure = secure_agent(&loopback(), &[], &[], &config);
    let https = format!("https://{}", secure.agent.grpc);
    let project = Project::new();
    let ca = secure.agent.data_dir.join("tls/ca.pem");
    project.write("admin.token", &secure.tokens["admin"]);
    let (ca, token) = (ca.to_string_lossy(), project.path().join("admin.token"));
    project
        .deployctl(&[
            "declare",
            "env",
            "fleet",
            "sec",
            "--registry",
            &uri,
            "--select",
            "zone=secure",
            "--ca-file",
            &ca,
            "--token-file",
            &token.to_string_lossy(),
        ])
        .ok();
    // Registered with its scheme: nodes reaches it over TLS, with the token.
    let mut listed = Value::Null;
    let found = wait_until(Duration::from_secs(15), || {
        let out = project.deployctl(&["nodes", "--env", "sec", "--output", "json"]);
        listed = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
        listed["nodes"][0]["agent"] == https.as_str() && listed["nodes"][0]["reachable"] == true
    });
    assert!(found, "nodes does not reach {https}: {listed:#}");
    let repo = GitRepo::new();
    repo.commit_app("tls", Some("v1"));
    project
        .run_app("sec", "web", &repo.url(), "v1", &[])
        .ok()
        .mentions(&https);
    let (out, dep) = project.status_json("web");
    out.ok();
    assert_eq!(dep["instances"][0]["agent"], https.as_str(), "{dep:#}");
    assert_eq!(dep["instances"][0]["state"], "healthy", "{dep:#}");

    // Without the CA, an https:// agent of the fleet is refused before anything is sent.
    project
        .deployctl(&["declare", "env", "fleet", "noca", "--registry", &uri])
        .ok();
    project
        .deployctl(&["nodes", "--env", "noca"])
        .expect_code(2)
        .mentions("ca_file");
}
