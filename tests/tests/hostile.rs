//! Hostile input reaches the agent without the CLI's checks: a raw gRPC client sends what
//! deployctl never would, and the agent refuses each with a clear error naming the field.
//! And apps run as an unprivileged user when the agent is root (`run_as`).

use std::time::Duration;

use deployctl_e2e::*;
use deployctl_proto::v1 as pb;
use pb::agent_client::AgentClient;

fn spec(name: &str) -> pb::DeploymentSpec {
    pb::DeploymentSpec {
        name: name.into(),
        repo: "/nonexistent/repo".into(),
        command: "python3 app.py".into(),
        ..Default::default()
    }
}

#[test]
fn the_agent_refuses_hostile_requests_itself() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = AgentClient::connect(format!("http://{}", agent.grpc))
            .await
            .expect("connecting to the agent");
        let cases: Vec<(pb::DeploymentSpec, &str)> = vec![
            (
                pb::DeploymentSpec {
                    workdir: "../../etc".into(),
                    ..spec("a")
                },
                "workdir",
            ),
            (
                pb::DeploymentSpec {
                    workdir: "/etc".into(),
                    ..spec("a")
                },
                "workdir",
            ),
            (
                pb::DeploymentSpec {
                    workdir: "x/../../..".into(),
                    ..spec("a")
                },
                "workdir",
            ),
            (spec("../x"), "name"),
            (spec(""), "name"),
            (spec("a b"), "name"),
            (
                pb::DeploymentSpec {
                    port: 70000,
                    ..spec("a")
                },
                "port",
            ),
            (
                pb::DeploymentSpec {
                    requirements: "../../etc/passwd".into(),
                    ..spec("a")
                },
                "requirements",
            ),
            (
                pb::DeploymentSpec {
                    start_script: "/bin/sh".into(),
                    ..spec("a")
                },
                "start_script",
            ),
            (
                pb::DeploymentSpec {
                    env_vars: [("1BAD".to_string(), "v".to_string())].into(),
                    ..spec("a")
                },
                "env_vars.1BAD",
            ),
            (
                pb::DeploymentSpec {
                    env_vars: [("PATH=x".to_string(), "v".to_string())].into(),
                    ..spec("a")
                },
                "env_vars.",
            ),
            (
                pb::DeploymentSpec {
                    secrets: vec!["../../x".into()],
                    ..spec("a")
                },
                "secrets.",
            ),
            (
                pb::DeploymentSpec {
                    owner: "root".into(),
                    ..spec("a")
                },
                "owner",
            ),
            (
                pb::DeploymentSpec {
                    owner: "group:../x".into(),
                    ..spec("a")
                },
                "owner",
            ),
            (
                pb::DeploymentSpec {
                    pip: vec!["--index-url=http://evil".into()],
                    ..spec("a")
                },
                "packages.pip",
            ),
            (
                pb::DeploymentSpec {
                    repo: "relative/path".into(),
                    ..spec("a")
                },
                "repo",
            ),
            (
                pb::DeploymentSpec {
                    git_ref: "--upload-pack=touch /tmp/x".into(),
                    ..spec("a")
                },
                "ref",
            ),
        ];
        for (s, field) in cases {
            let shown = format!("{s:?}");
            let err = c
                .deploy(pb::DeployRequest {
                    spec: Some(s),
                    ..Default::default()
                })
                .await
                .err()
                .unwrap_or_else(|| panic!("accepted: {shown}"));
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{shown}: {err:?}");
            assert!(
                err.message().starts_with(field),
                "{field}: {}",
                err.message()
            );
        }
        // Too big a request is refused before it is even decoded.
        let huge = pb::DeploymentSpec {
            command: "x".repeat(2 * 1024 * 1024),
            ..spec("a")
        };
        let err = c
            .deploy(pb::DeployRequest {
                spec: Some(huge),
                ..Default::default()
            })
            .await
            .expect_err("a 2 MiB request is refused");
        assert_ne!(err.code(), tonic::Code::Ok);
        // The id a deploy's result is kept by is a word, not a path or a novel.
        for id in ["../x".to_string(), "a".repeat(65)] {
            let err = c
                .deploy(pb::DeployRequest {
                    spec: Some(spec("a")),
                    deploy_id: id.clone(),
                    ..Default::default()
                })
                .await
                .err()
                .unwrap_or_else(|| panic!("accepted deploy_id {id:?}"));
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
            assert!(err.message().starts_with("deploy_id"), "{}", err.message());
        }
        // Other calls validate names too.
        let err = c
            .status(pb::StatusRequest {
                name: "../x".into(),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = c
            .logs(pb::LogsRequest {
                name: "../../etc".into(),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = c
            .set_secret(pb::SetSecretRequest {
                owner: "user:../../x".into(),
                name: "A".into(),
                value: b"v".to_vec(),
                kind: String::new(),
            })
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    });
    // Nothing was created.
    let made: Vec<_> = std::fs::read_dir(agent.data_dir.join("deployments"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(made.is_empty(), "{made:?}");
}

#[test]
fn apps_run_as_the_configured_user() {
    require_root("run_as needs the agent to run as root");
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("a nobody user");
    let ip = loopback();
    let agent = Agent::start_prepared(&ip, "run_as = \"nobody\"\n", &[], |data| {
        // The unprivileged app must be able to reach its checkout.
        use std::os::unix::fs::PermissionsExt;
        if let Some(parent) = data.parent() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.write_executable("prepare.sh", "echo prepared-by-$(id -un) > made.txt\n");
    repo.commit_app("confined", None);
    project
        .deployctl(&[
            "run",
            "svc",
            "--repo",
            &repo.url(),
            "--command",
            "python3 app.py",
            "--start-script",
            "prepare.sh",
            "--env-var",
            "APP_FILE=made.txt",
        ])
        .ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["uid"], nobody.uid.as_raw(), "{served}");
    assert_eq!(served["file"], "prepared-by-nobody", "{served}");
}
