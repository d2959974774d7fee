//! The agent's configuration: a typed struct with defaults; a TOML file of optional fields
//! laid over it ([`FileConfig`], unknown keys refused); flags last (in `main.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod installer;
mod proxy_keys;
pub use installer::InstallerMode;

#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC address (`deploy.v1.Agent`).
    pub listen: SocketAddr,
    /// Plain HTTP address for load balancers and monitoring.
    pub http_listen: SocketAddr,
    /// Where releases, environments, git mirrors, logs and the node-local store live.
    pub data_dir: PathBuf,
    /// The address apps are told to bind (`HOST`) and that health checks connect to.
    pub app_host: IpAddr,
    /// Longest a start script may run before it is killed and the deploy fails.
    pub start_script_timeout: Duration,
    /// Longest a package install may run.
    pub install_timeout: Duration,
    /// Release directories kept per deployment (current and earlier ones, for rollback).
    pub keep_releases: usize,
    /// Which installer builds Python environments: auto (uv, installed if missing), uv, pip.
    pub installer: InstallerMode,
    /// The gRPC port's TLS certificate and key (PEM) [default: `<data>/tls/agent.{pem,key}`
    /// when `deploy-agent init` made them].
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Users and groups [default: `<data>/auth.toml`]. Without users, no authentication.
    pub auth_file: Option<PathBuf>,
    /// Allow a non-loopback gRPC address without TLS and authentication.
    pub insecure: bool,
    /// When the agent runs as root, the user apps (and start scripts) run as [default: none
    /// without users; with users, `deploy-app` when that user exists (see [`crate::app_user`])].
    pub run_as: Option<String>,
    /// Unused venvs and artifacts (no kept release uses them) are kept for later deploys
    /// while they take at most this many bytes in all (least recently used go first).
    pub venv_keep_bytes: u64,
    /// ... and for at most this long since their last use.
    pub venv_keep_age: Duration,
    /// With users, let apps run as the agent's own user (which can read every owner's
    /// secrets): only when said explicitly.
    pub apps_as_agent_user: bool,
    /// An app's log is rotated as it reaches this many bytes; a rotated file holds at most
    /// this many (the newest).
    pub log_max_bytes: u64,
    /// Rotated log files kept (`app.log.1` .. `app.log.N`): an app's logs take at most
    /// `log_max_bytes × (log_keep + 1)`.
    pub log_keep: usize,
    /// The agent's own log format: `text` or `json`.
    pub log_format: String,
    /// Give each app instance a cgroup v2 (membership only) where the agent can create one,
    /// so that nothing an app starts escapes its stop; `false`: track apps by process group
    /// and an environment marker only.
    pub cgroups: bool,
    /// Deploys may install Debian packages on the node with apt-get (`packages.apt`); the
    /// agent must run as root. Off by default: they change the node for every app.
    pub allow_apt: bool,
    /// How long `remove` lets load balancers see the deployment's health endpoint answer
    /// 503 (while it still serves) before it stops: two of their check intervals.
    pub lb_drain: Duration,
    /// When the agent runs as root, each deployment's own uid (and gid) comes from this
    /// range, inclusive (see [`crate::identity`]).
    pub app_uids: (u32, u32),
    /// The ports a deployment may ask for, inclusive: none below 1024 (the node's own).
    pub ports: (u16, u16),
    /// The deployments' memory limits may add up to this share of the node's memory.
    pub overcommit: f64,
    /// `register = "etcd://HOST:2379/PREFIX"`: the etcd this agent announces itself in.
    pub register: Option<crate::register::Registry>,
    /// `labels = {zone = "a"}`: what fleet envs select this agent by.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The lease the announcement is kept under: a stopped or cut-off agent disappears
    /// from the registry within this long.
    pub register_ttl: Duration,
    /// The node proxy closes a connection whose request's head has not arrived this long
    /// after it opened, or after its first byte (slowloris).
    pub proxy_header_timeout: Duration,
    /// ... and a kept-alive connection with no request for this long.
    pub proxy_idle_timeout: Duration,
    /// Connections one deployment may have open through the node proxy; one more is
    /// answered 503 (HTTP) or closed (TCP).
    pub proxy_max_connections: u32,
    /// Peers (load balancers in front of the node) whose `X-Forwarded-For` the node proxy
    /// appends to and whose `X-Forwarded-Proto` it keeps; anyone else's are replaced.
    pub trusted_proxies: Vec<crate::cidr::Cidr>,
    /// The node proxy's threads (taken when it starts) [default: half the cores, at least 1].
    pub proxy_threads: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7070),
            http_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7071),
            data_dir: default_data_dir(),
            app_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            start_script_timeout: Duration::from_secs(30 * 60),
            install_timeout: Duration::from_secs(30 * 60),
            keep_releases: 3,
            installer: Default::default(),
            tls_cert: None,
            tls_key: None,
            auth_file: None,
            insecure: false,
            run_as: None,
            apps_as_agent_user: false,
            venv_keep_bytes: 5 << 30,
            venv_keep_age: Duration::from_secs(14 * 86_400),
            lb_drain: Duration::from_secs(4),
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
            log_format: "text".to_string(),
            cgroups: true,
            allow_apt: false,
            app_uids: crate::identity::DEFAULT_RANGE,
            ports: (1024, 65535),
            overcommit: 1.0,
            register: None,
            labels: Default::default(),
            register_ttl: Duration::from_secs(10),
            proxy_header_timeout: crate::proxy::DEFAULT_HEADER_TIMEOUT,
            proxy_idle_timeout: crate::proxy::DEFAULT_IDLE_TIMEOUT,
            proxy_max_connections: crate::proxy::DEFAULT_MAX_CONNECTIONS,
            trusted_proxies: Vec::new(),
            proxy_threads: None,
        }
    }
}

/// `config.toml`: every field optional; what is set replaces the default. Unknown keys are
/// an error that names them.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub app_host: Option<IpAddr>,
    /// A duration: "30m", "90s".
    pub start_script_timeout: Option<String>,
    pub install_timeout: Option<String>,
    pub keep_releases: Option<usize>,
    pub log_max_bytes: Option<u64>,
    pub log_keep: Option<usize>,
    pub log_format: Option<String>,
    /// auto | uv | pip
    pub installer: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub auth_file: Option<PathBuf>,
    pub insecure: Option<bool>,
    pub run_as: Option<String>,
    pub apps_as_agent_user: Option<bool>,
    pub venv_keep_bytes: Option<u64>,
    /// A duration: "14d", "12h".
    pub venv_keep_age: Option<String>,
    /// A duration: "4s", "0s" (no wait).
    pub lb_drain: Option<String>,
    pub cgroups: Option<bool>,
    pub allow_apt: Option<bool>,
    /// "61184-65519"
    pub app_uids: Option<String>,
    /// "1024-65535"
    pub ports: Option<String>,
    pub overcommit: Option<f64>,
    /// "etcd://HOST:2379/PREFIX"
    pub register: Option<String>,
    /// {zone = "a", ...}
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// A duration: "10s".
    pub register_ttl: Option<String>,
    /// Durations: "10s", "75s".
    pub proxy_header_timeout: Option<String>,
    pub proxy_idle_timeout: Option<String>,
    pub proxy_max_connections: Option<u32>,
    /// ["10.0.0.0/8", "192.0.2.7"]
    pub trusted_proxies: Option<Vec<String>>,
    pub proxy_threads: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Lays the file's settings over `config`. Long on purpose: one short step per key,
    /// each naming its key in its error, in the order of the file's documentation.
    pub fn apply(self, config: &mut Config, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let duration = |key: &str, v: &str| {
            humantime::parse_duration(v).map_err(|e| {
                invalid(format!(
                    "{key}: {v:?} is not a duration (like \"30m\"): {e}"
                ))
            })
        };
        proxy_keys::apply(&self, config, &invalid, &duration)?;
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.http_listen {
            config.http_listen = v;
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.app_host {
            config.app_host = v;
        }
        if let Some(v) = &self.start_script_timeout {
            config.start_script_timeout = duration("start_script_timeout", v)?;
        }
        if let Some(v) = &self.install_timeout {
            config.install_timeout = duration("install_timeout", v)?;
        }
        if let Some(v) = self.keep_releases {
            config.keep_releases = v.max(1);
        }
        if let Some(v) = self.log_max_bytes {
            if v < 4096 {
                return Err(invalid(format!(
                    "log_max_bytes: {v} is too small (at least 4096)"
                )));
            }
            config.log_max_bytes = v;
        }
        if let Some(v) = self.log_keep {
            config.log_keep = v.max(1);
        }
        if let Some(v) = self.log_format {
            if v != "text" && v != "json" {
                return Err(invalid(format!(
                    "log_format: {v:?} must be \"text\" or \"json\""
                )));
            }
            config.log_format = v;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "tls_cert and tls_key: give both or neither".to_string(),
            ));
        }
        if let (Some(c), Some(k)) = (self.tls_cert, self.tls_key) {
            config.tls_cert = Some(c);
            config.tls_key = Some(k);
        }
        if let Some(v) = self.auth_file {
            config.auth_file = Some(v);
        }
        if let Some(v) = self.insecure {
            config.insecure = v;
        }
        if let Some(v) = self.run_as {
            config.run_as = Some(v);
        }
        if let Some(v) = self.cgroups {
            config.cgroups = v;
        }
        if let Some(v) = self.allow_apt {
            config.allow_apt = v;
        }
        if let Some(v) = self.apps_as_agent_user {
            config.apps_as_agent_user = v;
        }
        if let Some(v) = self.venv_keep_bytes {
            config.venv_keep_bytes = v;
        }
        if let Some(v) = &self.venv_keep_age {
            config.venv_keep_age = duration("venv_keep_age", v)?;
        }
        if let Some(v) = &self.lb_drain {
            config.lb_drain = duration("lb_drain", v)?;
        }
        if let Some(v) = &self.app_uids {
            config.app_uids =
                crate::identity::parse_range(v).map_err(|e| invalid(format!("app_uids: {e}")))?;
        }
        if let Some(v) = &self.ports {
            config.ports =
                crate::ports::parse_range(v).map_err(|e| invalid(format!("ports: {e}")))?;
        }
        if let Some(v) = self.overcommit {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(format!(
                    "overcommit: {v} must be a positive number (1.0: limits may add up to the node's memory)"
                )));
            }
            config.overcommit = v;
        }
        if let Some(v) = &self.register {
            config.register = Some(
                crate::register::Registry::parse(v)
                    .map_err(|e| invalid(format!("register: {e}")))?,
            );
        }
        if let Some(v) = self.labels {
            crate::register::check_labels(&v).map_err(|e| invalid(format!("labels: {e}")))?;
            config.labels = v;
        }
        if let Some(v) = &self.register_ttl {
            let ttl = duration("register_ttl", v)?;
            if ttl < Duration::from_secs(2) {
                return Err(invalid(format!(
                    "register_ttl: {v:?} is too short (at least 2s, etcd's shortest lease)"
                )));
            }
            config.register_ttl = ttl;
        }
        if let Some(v) = self.installer {
            config.installer = InstallerMode::parse(&v).ok_or_else(|| {
                invalid(format!(
                    "installer: {v:?} must be \"auto\", \"uv\" or \"pip\""
                ))
            })?;
        }
        Ok(())
    }
}

/// As root, `/var/lib/deploy-agent` (systemd's state directory: apps, which run as their
/// own users, can reach it, unlike root's home); else `$XDG_DATA_HOME/deploy-agent`, else `~/.local/share/deploy-agent`, else `./deploy-agent-data`.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/deploy-agent");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("deploy-agent");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/deploy-agent");
    }
    PathBuf::from("deploy-agent-data")
}

impl Config {
    /// The users-and-groups file.
    pub fn auth_path(&self) -> PathBuf {
        self.auth_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("auth.toml"))
    }

    /// The certificate and key to serve with: configured, else the ones `init` made.
    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => {
                let files = crate::tls::TlsFiles::new(&self.data_dir);
                files.exist().then(|| (files.cert(), files.key()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
