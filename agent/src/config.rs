//! The agent's configuration: a typed struct with defaults, set from flags in `main.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

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
    pub installer: crate::pipeline::toolchain::InstallerMode,
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
        }
    }
}

/// `$XDG_DATA_HOME/deploy-agent`, else `~/.local/share/deploy-agent`, else `./deploy-agent-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("deploy-agent");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/deploy-agent");
    }
    PathBuf::from("deploy-agent-data")
}
