//! The config file laid over the defaults: what it overrides, what it refuses.

use super::*;

#[test]
fn file_overrides_defaults() {
    let f = FileConfig::parse(
        "listen = \"0.0.0.0:7000\"\napp_host = \"10.0.0.5\"\ninstall_timeout = \"5m\"\nlog_keep = 5\n",
    )
    .unwrap();
    let mut c = Config::default();
    f.apply(&mut c, Path::new("c.toml")).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(c.app_host.to_string(), "10.0.0.5");
    assert_eq!(c.install_timeout, Duration::from_secs(300));
    assert_eq!(c.log_keep, 5);
    assert_eq!(c.http_listen.port(), 7071, "unset keys keep their defaults");
}

#[test]
fn the_installed_example_is_valid() {
    let f = FileConfig::parse(include_str!("../../../scripts/config.toml")).unwrap();
    let mut c = Config::default();
    f.apply(&mut c, Path::new("scripts/config.toml")).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/deploy-agent"));
}

#[test]
fn unknown_key_is_named() {
    let e = FileConfig::parse("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n").unwrap_err();
    assert!(e.contains("listen_addr"), "{e}");
}

#[test]
fn bad_duration_names_the_key() {
    let f = FileConfig::parse("install_timeout = \"soon\"\n").unwrap();
    let e = f
        .apply(&mut Config::default(), Path::new("c.toml"))
        .unwrap_err();
    assert!(e.to_string().contains("install_timeout"), "{e}");
}

#[test]
fn register_labels_and_ttl_are_read_and_checked() {
    let f = FileConfig::parse(
        "register = \"etcd://10.0.0.2:2379/team\"\nlabels = {zone = \"a\", gpu = \"a100\"}\nregister_ttl = \"5s\"\n",
    )
    .unwrap();
    let mut c = Config::default();
    f.apply(&mut c, Path::new("c.toml")).unwrap();
    let r = c.register.expect("register");
    assert_eq!(r.endpoint, "http://10.0.0.2:2379");
    assert_eq!(r.prefix, "/team/agents/");
    assert_eq!(c.labels["zone"], "a");
    assert_eq!(c.register_ttl, Duration::from_secs(5));
    for (text, key) in [
        ("register = \"http://h:1\"\n", "register"),
        ("labels = {zone = \"a,b\"}\n", "labels"),
        ("register_ttl = \"1s\"\n", "register_ttl"),
    ] {
        let e = FileConfig::parse(text)
            .unwrap()
            .apply(&mut Config::default(), Path::new("c.toml"))
            .unwrap_err();
        assert!(e.to_string().contains(key), "{text}: {e}");
    }
}

#[test]
fn the_proxy_keys_are_checked() {
    let f = FileConfig::parse(
        "proxy_header_timeout = \"5s\"\nproxy_idle_timeout = \"2m\"\nproxy_max_connections = 500\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n",
    )
    .unwrap();
    let mut c = Config::default();
    f.apply(&mut c, Path::new("c.toml")).unwrap();
    assert_eq!(c.proxy_header_timeout, Duration::from_secs(5));
    assert_eq!(c.proxy_idle_timeout, Duration::from_secs(120));
    assert_eq!(c.proxy_max_connections, 500);
    assert_eq!(c.trusted_proxies.len(), 2);
    for (toml, key) in [
        ("trusted_proxies = [\"10.0.0.0/40\"]\n", "trusted_proxies"),
        ("trusted_proxies = [\"lb.example\"]\n", "trusted_proxies"),
        ("proxy_max_connections = 0\n", "proxy_max_connections"),
        ("proxy_idle_timeout = \"0s\"\n", "proxy_idle_timeout"),
        ("proxy_threads = 0\n", "proxy_threads"),
    ] {
        let e = FileConfig::parse(toml)
            .unwrap()
            .apply(&mut Config::default(), Path::new("c.toml"))
            .unwrap_err();
        assert!(e.to_string().contains(key), "{toml}: {e}");
    }
}
