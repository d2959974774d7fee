use std::path::{Component, Path};

use super::*;

fn raw() -> RawSpec {
    RawSpec {
        name: "iris".into(),
        repo: "/tmp/repo".into(),
        command: "python app.py".into(),
        ..Default::default()
    }
}

#[test]
fn defaults_are_applied() {
    let s = Spec::validate(raw()).unwrap();
    assert_eq!(s.port, 8000);
    assert_eq!(s.restart, RestartPolicy::OnFailure);
    assert_eq!(s.health.timeout, DEFAULT_HEALTH_TIMEOUT);
    assert_eq!(s.git_ref, None);
    assert!(!s.has_packages());
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", "../x", "a b", "-x", "x/y", &"a".repeat(64)] {
        let err = validate_name(bad).unwrap_err().to_string();
        assert!(err.starts_with("name:"), "{bad:?}: {err}");
    }
    validate_name("iris-v2.1_a").unwrap();
}

#[test]
fn workdir_may_not_escape() {
    for bad in ["../../etc", "a/../../b", "/etc", "x/.."] {
        let mut r = raw();
        r.workdir = bad.into();
        let err = Spec::validate(r).unwrap_err().to_string();
        assert!(err.starts_with("workdir:"), "{bad}: {err}");
    }
    let mut r = raw();
    r.workdir = "./services/api/".into();
    assert_eq!(
        Spec::validate(r).unwrap().workdir,
        PathBuf::from("services/api")
    );
}

#[test]
fn field_errors_name_the_field() {
    type Mutate = fn(&mut RawSpec);
    let cases: Vec<(Mutate, &str)> = vec![
        (|r| r.port = 70000, "port:"),
        (|r| r.command = " ".into(), "command:"),
        (|r| r.repo = "relative/path".into(), "repo:"),
        (|r| r.restart = "sometimes".into(), "restart:"),
        (|r| r.health_path = "health".into(), "health.path:"),
        (
            |r| {
                r.env_vars.insert("1X".into(), "v".into());
            },
            "env_vars.1X:",
        ),
        (
            |r| {
                r.env_vars.insert("PORT".into(), "1".into());
            },
            "env_vars.PORT:",
        ),
        (|r| r.apt = vec!["--force-yes".into()], "packages.apt:"),
        (|r| r.requirements = "../req.txt".into(), "requirements:"),
        (|r| r.owner = "bob".into(), "owner:"),
    ];
    for (mutate, prefix) in cases {
        let mut r = raw();
        mutate(&mut r);
        let err = Spec::validate(r).unwrap_err().to_string();
        assert!(err.starts_with(prefix), "expected {prefix}, got {err}");
    }
}

#[test]
fn remote_urls() {
    assert!(is_remote_url("git@github.com:org/repo.git"));
    assert!(is_remote_url("file:///tmp/x"));
    assert!(!is_remote_url("/tmp/x"));
    assert!(!is_remote_url("repo"));
}

proptest::proptest! {
    /// Whatever a request carries, validation never panics, and what it accepts stays
    /// inside the checkout and names a plain deployment.
    #[test]
    fn validation_never_panics_or_escapes(
        name in ".{0,70}",
        workdir in "(\\.\\./|/|[a-z.]{1,4}/){0,6}[a-z.]{0,5}",
        requirements in ".{0,40}",
        env in "[A-Za-z0-9_=. -]{0,12}",
        port in 0u32..100_000,
    ) {
        let raw = RawSpec {
            name,
            repo: "/srv/repo".into(),
            command: "python app.py".into(),
            workdir,
            requirements,
            env_vars: [(env, "v".to_string())].into(),
            port,
            ..Default::default()
        };
        if let Ok(s) = Spec::validate(raw) {
            let inside = |p: &Path| p.components().all(|c| matches!(c, Component::Normal(_)));
            proptest::prop_assert!(inside(&s.workdir));
            proptest::prop_assert!(s.requirements.as_deref().is_none_or(inside));
            proptest::prop_assert!(validate_name(&s.name).is_ok());
            proptest::prop_assert!(!s.name.contains('/') && !s.name.starts_with('.'));
            proptest::prop_assert!(s.port >= 1);
            for k in s.env_vars.keys() {
                proptest::prop_assert!(validate_env_name(k).is_ok());
            }
        }
    }
}

#[test]
fn restart_policy() {
    assert!(RestartPolicy::OnFailure.restarts_after(1));
    assert!(!RestartPolicy::OnFailure.restarts_after(0));
    assert!(RestartPolicy::Always.restarts_after(0));
    assert!(!RestartPolicy::Never.restarts_after(137));
}

#[test]
fn debian_package_names_and_versions_pass_and_options_do_not() {
    for ok in [
        "figlet",
        "libpq-dev",
        "g++",
        "python3.11",
        "libc6=2.36-9+deb12u4",
        "0ad",
    ] {
        assert!(is_apt_package(ok), "{ok}");
    }
    for bad in [
        "",
        "a",
        "-y",
        "--allow-unauthenticated",
        "Figlet",
        "pkg name",
        "pkg;rm",
        "pkg=",
        "pkg=-1",
        "../x",
        "pkg/stable",
    ] {
        assert!(!is_apt_package(bad), "{bad}");
    }
}
