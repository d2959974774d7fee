use super::*;

fn store() -> (SecretStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "secrets-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    (SecretStore::new(dir.clone()), dir)
}

#[test]
fn set_get_list_remove_with_private_modes() {
    use std::os::unix::fs::PermissionsExt;
    let (s, dir) = store();
    s.set_blocking("group:ml", "DB_PASSWORD", b"hunter2!", Kind::Env)
        .unwrap();
    let (v, k) = s.get_blocking("group:ml", "DB_PASSWORD").unwrap().unwrap();
    assert_eq!((v.as_slice(), k), (&b"hunter2!"[..], Kind::Env));
    let mode = std::fs::metadata(dir.join("group_ml/DB_PASSWORD"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dmode = std::fs::metadata(dir.join("group_ml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dmode & 0o777, 0o700);
    assert_eq!(s.list_blocking("group:ml").unwrap().len(), 1);
    assert!(s.get_blocking("user:bob", "DB_PASSWORD").unwrap().is_none());
    assert!(s.remove_blocking("group:ml", "DB_PASSWORD").unwrap());
    assert!(!s.remove_blocking("group:ml", "DB_PASSWORD").unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hostile_names_and_owners_are_refused() {
    let (s, _) = store();
    assert!(s.set_blocking("group:ml", "../x", b"v", Kind::Env).is_err());
    assert!(s.set_blocking("group:../x", "A", b"v", Kind::Env).is_err());
    assert!(s.set_blocking("root", "A", b"v", Kind::Env).is_err());
    assert!(s.set_blocking("user:a", "A", b"", Kind::Env).is_err());
}

#[test]
fn git_credentials_by_scheme() {
    let (s, dir) = store();
    s.set_blocking("user:a", "GIT_TOKEN", b"u:p", Kind::GitHttps)
        .unwrap();
    s.set_blocking(
        "user:a",
        "DEPLOY_KEY",
        b"-----BEGIN KEY-----",
        Kind::GitSshKey,
    )
    .unwrap();
    let https = s
        .git_credential_blocking("user:a", "https://h/r.git")
        .unwrap()
        .unwrap();
    assert_eq!(https.0, Kind::GitHttps);
    let ssh = s
        .git_credential_blocking("user:a", "git@h:r.git")
        .unwrap()
        .unwrap();
    assert_eq!(ssh.0, Kind::GitSshKey);
    assert!(s
        .git_credential_blocking("user:a", "/local/repo")
        .unwrap()
        .is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn redaction() {
    let r = Redactor::new(["s3cr3t-value".to_string(), "ab".to_string()]);
    assert_eq!(r.text("echo s3cr3t-value!"), "echo [redacted]!");
    assert_eq!(r.text("ab stays"), "ab stays");
    let k = Redactor::new(["-----BEGIN-----\nAAAABBBBCCCC\n-----END-----".to_string()]);
    assert_eq!(k.text("line AAAABBBBCCCC"), "line [redacted]");
}
