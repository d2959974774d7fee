use super::*;

#[test]
fn unknown_fields_are_named() {
    let err = serde_norway::from_str::<DeploymentDecl>("repo: x\ncommand: y\nprot: 80\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("prot"), "{err}");
    let err = serde_norway::from_str::<DeploymentDecl>("health:\n  pth: /x\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("pth"), "{err}");
}

#[test]
fn spec_example_parses() {
    let text = r#"
object_type: deployment
type: process
env: prod
repo: https://example.org/team/app.git
ref: v1.2.0
workdir: services/api
command: uvicorn app:app --host $HOST --port $PORT
packages:
  pip: [fastapi==0.115.0, uvicorn]
  apt: []
  conda: []
requirements: requirements.txt
start_script: scripts/fetch-model.sh
env_vars: {MODEL_PATH: model.pkl, WORKERS: 2}
secrets: [DB_PASSWORD]
port: 8000
health:
  path: /health
  timeout: 120s
  interval: 10s
apply_path: /predict
owner: group:ml
restart: on-failure
"#;
    let d: DeploymentDecl = serde_norway::from_str(text).unwrap();
    d.validate("iris").unwrap();
    let spec = d.to_spec("iris", Path::new("/p")).unwrap();
    assert_eq!(spec.health_timeout_ms, 120_000);
    assert_eq!(spec.env_vars["WORKERS"], "2");
    assert_eq!(spec.git_ref, "v1.2.0");
}

#[test]
fn validation_names_fields() {
    let base = DeploymentDecl {
        object_type: "deployment".into(),
        kind: "process".into(),
        repo: "/r".into(),
        command: "python app.py".into(),
        ..Default::default()
    };
    base.validate("ok").unwrap();
    let mut d = base.clone();
    d.port = Some(70000);
    assert!(d
        .validate("ok")
        .unwrap_err()
        .to_string()
        .starts_with("port:"));
    let mut d = base.clone();
    d.health.timeout = Some("soon".into());
    assert!(d
        .validate("ok")
        .unwrap_err()
        .to_string()
        .starts_with("health.timeout:"));
    assert!(base
        .validate("../x")
        .unwrap_err()
        .to_string()
        .starts_with("name:"));
    assert!(base.validate("a b").is_err());
}

proptest::proptest! {
    /// Any text: a declaration or an error, never a panic.
    #[test]
    fn the_parser_never_panics(text in "\\PC{0,300}") {
        if let Ok(d) = serde_norway::from_str::<DeploymentDecl>(&text) {
            let _ = d.validate("x");
            let _ = d.to_spec("x", Path::new("/p"));
        }
    }

    /// An unknown top-level field is refused, and the error names it.
    #[test]
    fn any_unknown_field_is_named(field in "[a-z]{3,12}") {
        let known = ["object_type", "type", "env", "repo", "ref", "workdir", "command",
            "packages", "requirements", "start_script", "env_vars", "secrets", "port",
            "health", "apply_path", "owner", "restart", "kill_timeout", "strategy", "proxy",
            "artifacts"];
        proptest::prop_assume!(!known.contains(&field.as_str()));
        let text = format!("repo: /r\ncommand: c\n{field}: 1\n");
        let err = serde_norway::from_str::<DeploymentDecl>(&text).unwrap_err().to_string();
        proptest::prop_assert!(err.contains(&field), "{}", err);
    }
}

#[test]
fn durations() {
    assert_eq!(
        parse_duration("t", "120s").unwrap(),
        Duration::from_secs(120)
    );
    assert_eq!(parse_duration("t", "2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("t", "90").unwrap(), Duration::from_secs(90));
    assert_eq!(
        parse_duration("t", "500ms").unwrap(),
        Duration::from_millis(500)
    );
}

#[test]
fn repo_paths() {
    assert_eq!(
        absolute_repo("git@h:o/r.git", Path::new("/p")),
        "git@h:o/r.git"
    );
    assert_eq!(absolute_repo("repo", Path::new("/p")), "/p/repo");
    assert_eq!(absolute_repo("/abs", Path::new("/p")), "/abs");
    assert_eq!(absolute_repo("../x/./repo", Path::new("/p/q")), "/p/x/repo");
}

#[test]
fn a_relative_local_repo_stays_relative_to_the_declaration() {
    let (cwd, root) = (Path::new("/work/proj/sub"), Path::new("/work/proj"));
    assert_eq!(declared_repo("../../myapp", cwd, root), "../myapp");
    assert_eq!(declared_repo("./app", root, root), "app");
    assert_eq!(declared_repo(".", root, root), ".");
    assert_eq!(declared_repo("/abs/repo", cwd, root), "/abs/repo");
    assert_eq!(
        declared_repo("https://g.example/r.git", cwd, root),
        "https://g.example/r.git"
    );
}
