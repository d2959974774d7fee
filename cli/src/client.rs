//! Talking to agents: which agents an env names ([`env`]), connecting to them with a
//! deadline and keepalive pings, calling all of an env's agents at once ([`fanout`]), and
//! starting the built-in `local` agent in the background when nothing answers ([`local`]).
//!
//! Every call to an agent is bounded, so a hung agent (stopped, wedged, or cut off by the
//! network) costs a command seconds, never forever:
//! - connecting, and requests an agent answers at once (status, nodes, secrets, the start
//!   of a deploy or of a log stream), within the timeout (`--timeout`, default 5s);
//! - calls that legitimately last (a deploy's event stream, `logs -f`) by HTTP/2 keepalive
//!   pings: after [`KEEPALIVE_INTERVAL`] without a frame from the agent, a ping that must
//!   be answered within the timeout. A deploy step may stay silent for minutes (a large
//!   download, a slow start script, the health step waiting up to `health.timeout`), and
//!   an agent's HTTP/2 layer answers pings even then, while a stopped or unreachable one
//!   does not: the pings tell "busy" from "hung" without the agent having to send
//!   anything, so older agents are covered too.

mod env;
mod fanout;
pub(crate) mod fleet;
mod local;
mod whoami;

use std::time::{Duration, Instant};

use anyhow::anyhow;
use deployctl_proto::v1::agent_client::AgentClient;
use tonic::transport::{Channel, Endpoint};

pub(crate) use env::{check_env, normalize, resolve_env, validate_address, validate_env};
pub(crate) use fanout::{
    answer, for_each_agent, AgentError, Call, CallError, Fanout, Limit, Reply,
};
pub(crate) use local::{local_address, local_agent_pids, local_data_dir};
pub(crate) use whoami::{may_touch, named, who_am_i};

pub(crate) type Client =
    AgentClient<tonic::service::interceptor::InterceptedService<Channel, Token>>;

/// After this long without a frame from the agent, a keepalive ping is sent; an agent that
/// does not answer it within the timeout is taken for hung.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// `--timeout`: a positive duration such as `5s`, `500ms` or `1m`.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d.is_zero() => Err("must be more than 0 (e.g. 5s)".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (e.g. 5s, 500ms, 1m)")),
    }
}

/// The agents of an env, and how to reach them.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The env's name, for messages.
    pub env: String,
    pub addresses: Vec<String>,
    /// The built-in `local` env: its agent is started when it does not answer.
    pub builtin_local: bool,
    /// The CA that signed the agents' certificates (PEM), for https:// addresses.
    pub ca_pem: Option<Vec<u8>>,
    /// The bearer token sent to the agents.
    pub token: Option<String>,
    /// How long an agent may take to connect, to answer a request or a keepalive ping.
    pub timeout: Duration,
    /// A fleet env: its registry, selector and count (`addresses`: its live, matching agents).
    pub fleet: Option<std::sync::Arc<fleet::Fleet>>,
}

impl Target {
    /// The same agents, but never start one: read-only commands (status, logs, nodes, plan,
    /// check, dashboard, secret list), which say to run `deployctl local start` instead.
    pub(crate) fn no_autostart(&self) -> Target {
        Target {
            builtin_local: false,
            ..self.clone()
        }
    }
}

/// Sends the env's token with every request.
#[derive(Clone)]
pub(crate) struct Token(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Connects to an agent within the target's timeout; for the built-in local env, starts
/// one when nothing answers (and waits up to 20 s for it). Where the local agent's address
/// does not answer and nothing is started (read-only commands), the error says to run
/// `deployctl local start`.
pub(crate) async fn connect(target: &Target, address: &str) -> anyhow::Result<Client> {
    match try_connect(target, address).await {
        Ok(c) => Ok(c),
        Err(first) if target.builtin_local => {
            local::start_local_agent(address)?;
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
        Err(e) if address == normalize(&local_address()) => Err(anyhow!(
            "{e:#}; start the local agent with `deployctl local start`"
        )),
        Err(e) => Err(e),
    }
}

async fn try_connect(target: &Target, address: &str) -> anyhow::Result<Client> {
    let timeout = target.timeout;
    let mut endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| anyhow!("agent address {address:?} is not valid: {e}"))?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(timeout)
        .keep_alive_while_idle(true);
    if address.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &target.ca_pem {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| anyhow!("TLS for {address}: {e}"))?;
    }
    // The TCP connect has its own timeout; this one also covers TLS and HTTP/2 set-up,
    // which a stopped agent (the kernel still accepts its connections) never completes.
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            let why = source_text(&e);
            // An agent with TLS answers a plain HTTP/2 preface with a TLS alert: h2 sees
            // garbage ("frame with invalid size", "protocol error").
            let hint = if address.starts_with("http://")
                && ["protocol", "frame", "h2", "invalid"]
                    .iter()
                    .any(|w| why.to_lowercase().contains(w))
            {
                " (if the agent serves TLS, use https:// and the env's ca_file)"
            } else {
                ""
            };
            return Err(anyhow!("agent {address} does not answer: {why}{hint}"));
        }
        Err(_) => {
            return Err(anyhow!(
                "agent {address} did not answer within {} (connecting)",
                humantime::format_duration(timeout)
            ))
        }
    };
    // resolve_env checked that the token fits in a header.
    let token =
        match &target.token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                anyhow!("token_file: the token has characters a header cannot carry")
            })?),
            None => None,
        };
    Ok(AgentClient::with_interceptor(channel, Token(token))
        .max_decoding_message_size(64 * 1024 * 1024))
}

/// An error and its causes on one line.
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    // The words a person needs for the common cases, not the transport's chain.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "nothing listens there (connection refused)".into()
                }
                std::io::ErrorKind::TimedOut => return "the connection timed out".into(),
                _ => {}
            }
        }
        cur = err.source();
    }
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        cur = s.source();
    }
    msg
}

/// Whether a call failed because the agent stopped answering keepalive pings.
fn keepalive_timed_out(s: &tonic::Status) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = cur {
        if e.to_string().contains("keep-alive timed out") {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A gRPC error as a person reads it: the agent's own message, with the address.
pub(crate) fn status_text(address: &str, s: &tonic::Status) -> String {
    if keepalive_timed_out(s) {
        return format!(
            "agent {address} stopped answering (no reply to a keepalive ping): it may be hung, stopped or cut off"
        );
    }
    // An agent with TLS answers plain HTTP/2 with a TLS alert, which h2 reports as a
    // protocol error, a cancelled operation or a transport error.
    let msg = s.message().to_lowercase();
    let tls_hint = address.starts_with("http://")
        && [
            "transport error",
            "protocol",
            "canceled",
            "cancelled",
            "frame",
        ]
        .iter()
        .any(|w| msg.contains(w));
    let text = match s.code() {
        tonic::Code::Unavailable => format!("agent {address} does not answer: {}", s.message()),
        tonic::Code::Unauthenticated => format!(
            "agent {address} refused the request: {} (check the env's token_file)",
            s.message()
        ),
        tonic::Code::PermissionDenied => format!("{address}: permission denied: {}", s.message()),
        _ => format!("{address}: {}", s.message()),
    };
    if tls_hint {
        format!("{text} (if the agent serves TLS, use https:// and the env's ca_file)")
    } else {
        text
    }
}

/// The caller's user name: `$USER`, else the name of the current uid, else the uid.
pub(crate) fn caller() -> String {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return u;
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}
