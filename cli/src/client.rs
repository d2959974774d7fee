//! Talking to agents: which agents an env names, connecting to them, and starting the
//! built-in `local` agent in the background when nothing answers.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use deployctl_proto::v1::agent_client::AgentClient;
use tonic::transport::{Channel, Endpoint};

use crate::decl::{self, EnvDecl};
use crate::error::bad_input;
use crate::project::Project;

pub type Client = AgentClient<tonic::service::interceptor::InterceptedService<Channel, Token>>;

/// The agents of an env, and how to reach them.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub addresses: Vec<String>,
    /// The built-in `local` env: its agent is started when it does not answer.
    pub builtin_local: bool,
    /// The CA that signed the agents' certificates (PEM), for https:// addresses.
    pub ca_pem: Option<Vec<u8>>,
    /// The bearer token sent to the agents.
    pub token: Option<String>,
}

impl Target {
    /// The same agents, but never start one (status, logs, remove, nodes).
    pub fn no_autostart(&self) -> Target {
        Target {
            builtin_local: false,
            ..self.clone()
        }
    }
}

/// Sends the env's token with every request.
#[derive(Clone)]
pub struct Token(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// `~/x` → `$HOME/x`; a relative path is taken from the project root.
fn expand(path: &str, root: &std::path::Path) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    root.join(path)
}

/// The built-in local agent's address (`DEPLOYCTL_LOCAL_ADDRESS`, default 127.0.0.1:7070).
pub fn local_address() -> String {
    std::env::var("DEPLOYCTL_LOCAL_ADDRESS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "127.0.0.1:7070".to_string())
}

/// Finds an env: `NAME.env.yaml` in the project, else the built-in `local`.
pub fn resolve_env(project: &Project, name: &str) -> anyhow::Result<Target> {
    decl::validate_name("env", name)?;
    let path = project.env_file(name);
    if let Some(env) = decl::load::<EnvDecl>(&path)? {
        validate_env(&path, &env)?;
        let at = path.display();
        let ca_pem = match &env.ca_file {
            Some(f) => {
                let p = expand(f, &project.root);
                Some(std::fs::read(&p).map_err(|e| {
                    bad_input(format!("{at}: ca_file: cannot read {}: {e}", p.display()))
                })?)
            }
            None => None,
        };
        let token = match &env.token_file {
            Some(f) => {
                let p = expand(f, &project.root);
                let t = std::fs::read_to_string(&p).map_err(|e| {
                    bad_input(format!(
                        "{at}: token_file: cannot read {}: {e}",
                        p.display()
                    ))
                })?;
                Some(t.trim().to_string())
            }
            None => None,
        };
        let addresses: Vec<String> = env.addresses.iter().map(|a| normalize(a)).collect();
        if addresses.iter().any(|a| a.starts_with("https://")) && ca_pem.is_none() {
            return Err(bad_input(format!(
                "{at}: ca_file: required for https:// addresses (the CA that `deploy-agent init` made)"
            )));
        }
        return Ok(Target {
            addresses,
            builtin_local: false,
            ca_pem,
            token,
        });
    }
    if name == crate::project::DEFAULT_ENV {
        return Ok(Target {
            addresses: vec![normalize(&local_address())],
            builtin_local: true,
            ..Default::default()
        });
    }
    Err(bad_input(format!(
        "env: {name:?} is not declared (no {}); declare it with `deployctl declare env agent {name} --address http://HOST:7070`",
        path.display()
    )))
}

pub fn validate_env(path: &std::path::Path, env: &EnvDecl) -> anyhow::Result<()> {
    let at = path.display();
    if env.object_type != "env" {
        return Err(bad_input(format!("{at}: object_type: must be \"env\"")));
    }
    if env.kind != "agent" {
        return Err(bad_input(format!(
            "{at}: type: {:?} is not an env type (available: agent)",
            env.kind
        )));
    }
    if env.addresses.is_empty() {
        return Err(bad_input(format!(
            "{at}: addresses: at least one agent address is required"
        )));
    }
    for a in &env.addresses {
        validate_address(a).map_err(|e| bad_input(format!("{at}: addresses: {e}")))?;
    }
    Ok(())
}

/// `http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT`.
pub fn validate_address(a: &str) -> Result<(), String> {
    let a = a.trim();
    let rest = a
        .strip_prefix("https://")
        .or_else(|| a.strip_prefix("http://"))
        .unwrap_or(a);
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{a:?} is not an agent address (http://HOST:PORT)")),
    }
}

/// Addresses are shown and stored as `http://HOST:PORT`.
pub fn normalize(a: &str) -> String {
    let a = a.trim().trim_end_matches('/');
    if a.contains("://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

/// Connects to an agent; for the built-in local env, starts one when nothing answers.
pub async fn connect(target: &Target, address: &str) -> anyhow::Result<Client> {
    match try_connect(target, address).await {
        Ok(c) => Ok(c),
        Err(first) if target.builtin_local => {
            start_local_agent(address)?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match try_connect(target, address).await {
                    Ok(c) => return Ok(c),
                    Err(e) if Instant::now() >= deadline => {
                        return Err(e.context(format!(
                            "the local deploy-agent did not come up at {address} (first error: {first:#})"
                        )))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Err(e) => Err(e),
    }
}

async fn try_connect(target: &Target, address: &str) -> anyhow::Result<Client> {
    let mut endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| bad_input(format!("agent address {address:?} is not valid: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true);
    if address.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &target.ca_pem {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| anyhow!("TLS for {address}: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow!("agent {address} does not answer: {}", source_text(&e)))?;
    let token = match &target.token {
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
            bad_input("token_file: the token has characters a header cannot carry")
        })?),
        None => None,
    };
    Ok(AgentClient::with_interceptor(channel, Token(token))
        .max_decoding_message_size(64 * 1024 * 1024))
}

fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg = format!("{msg}: {s}");
        cur = s.source();
    }
    msg
}

/// The data directory of the auto-started local agent.
fn local_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DEPLOYCTL_LOCAL_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("deploy-agent");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/deploy-agent"),
        None => std::env::temp_dir().join("deploy-agent"),
    }
}

/// `deploy-agent` next to this executable, else on PATH.
fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DEPLOYCTL_AGENT_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("deploy-agent")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("deploy-agent"))
}

/// Starts the local agent detached (own session: it outlives this command and the
/// terminal), logging to `<data dir>/agent.log`.
fn start_local_agent(address: &str) -> anyhow::Result<()> {
    let hostport = address.trim_start_matches("http://");
    let (host, port) = hostport
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
        .ok_or_else(|| bad_input(format!("local agent address {address:?} is not HOST:PORT")))?;
    let data_dir = local_data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let log_path = data_dir.join("agent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_err = log.try_clone().context("opening agent log")?;
    let bin = agent_binary();
    let http_port = port.checked_add(1).unwrap_or(0);
    let child = std::process::Command::new(&bin)
        .arg("--listen")
        .arg(format!("{host}:{port}"))
        .arg("--http-listen")
        .arg(format!("{host}:{http_port}"))
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--app-host")
        .arg(&host)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .spawn()
        .with_context(|| {
            format!(
                "nothing answers at {address} and starting {} failed; install deploy-agent next to deployctl or on PATH",
                bin.display()
            )
        })?;
    eprintln!(
        "No agent answered at {address}: started a local deploy-agent (pid {}), data in {}, log in {}",
        child.id(),
        data_dir.display(),
        log_path.display()
    );
    Ok(())
}

/// A gRPC error as a person reads it: the agent's own message, with the address.
pub fn status_text(address: &str, s: &tonic::Status) -> String {
    match s.code() {
        tonic::Code::Unavailable => format!("agent {address} does not answer: {}", s.message()),
        tonic::Code::Unauthenticated => format!(
            "agent {address} refused the request: {} (check the env's token_file)",
            s.message()
        ),
        tonic::Code::PermissionDenied => format!("{address}: permission denied: {}", s.message()),
        _ if address.starts_with("http://") && s.message().contains("transport error") => format!(
            "{address}: {} (if the agent serves TLS, use https:// and the env's ca_file)",
            s.message()
        ),
        _ => format!("{address}: {}", s.message()),
    }
}

/// The caller's user name: `$USER`, else the name of the current uid, else the uid.
pub fn caller() -> String {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return u;
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}
