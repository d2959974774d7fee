//! The proxy's control socket: a Unix socket (agent-only, 0600) that takes one JSON
//! request per line and answers one JSON line. The agent sets and removes routes (each with
//! its generation: an older one than the proxy has for the address is refused as stale),
//! reads the proxy's table (every second: the proxy is alive and routes as the agent
//! decided), takes duplicates of its listening sockets, and reads the counts it needs to
//! know when an old release has drained. A listening socket travels as `SCM_RIGHTS` with
//! the line about it ([`super::fdpass`]).
//!
//! ```text
//! {"op":"set_route","route":{"listen":"10.0.0.5:8000","mode":"http","backends":[{"addr":"127.0.0.1:41234","release":3}],"hold_timeout_ms":10000,"generation":12}}   (+ the listening socket)
//! {"op":"remove_route","listen":"10.0.0.5:8000","generation":13}
//! {"op":"table"}
//! -> {"ok":true,"pid":4242,"newest":13,"table":[{"listen":...,"generation":12}]}
//! {"op":"listener","listen":"10.0.0.5:8000"}
//! -> {"ok":true}   (+ the listening socket)
//! {"op":"stats"}
//! -> {"ok":true,"routes":[{"listen":...,"serving":[...],"draining":[...],"unavailable":0}]}
//! -> {"ok":false,"error":"cannot listen on 10.0.0.5:8000: Address already in use"}
//! -> {"ok":false,"stale":true,"error":"generation 7 of 10.0.0.5:8000 is older than 9: not applied"}
//! ```

use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

use super::counters::Counts;
use super::error::ProxyError;
use super::fdpass;
use super::table::{BackendStats, RouteSpec};
use crate::spec::ProxyMode;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ControlRequest {
    SetRoute {
        route: RouteSpec,
    },
    RemoveRoute {
        listen: SocketAddr,
        #[serde(default)]
        generation: u64,
    },
    Table,
    Listener {
        listen: SocketAddr,
    },
    Stats,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ControlReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The request was older than what the proxy has for its address: not applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStats>,
    /// The proxy's process (`table`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pid: u32,
    /// Every route as the proxy serves it (`table`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table: Vec<RouteSpec>,
    /// The newest generation the proxy has applied for any address, removals included.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub newest: u64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// One route's counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RouteStats {
    pub listen: SocketAddr,
    pub mode: ProxyMode,
    pub serving: Vec<BackendStats>,
    /// Backends replaced by a newer release that still finish requests.
    pub draining: Vec<BackendStats>,
    /// Everything the route answered since the proxy started.
    #[serde(default)]
    pub totals: Counts,
    /// Requests that found no backend within the hold timeout.
    pub unavailable: u64,
}

/// How long the agent waits for the proxy to answer a change.
pub(super) const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the agent waits for the answer to its ping.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The agent's side of the control socket.
#[derive(Debug, Clone)]
pub(crate) struct ProxyClient {
    socket: PathBuf,
}

impl ProxyClient {
    pub(crate) fn new(socket: &Path) -> ProxyClient {
        ProxyClient {
            socket: socket.to_path_buf(),
        }
    }

    /// Sends one request (with `socket`, if any) and reads the answer and the sockets that
    /// came with it; an answer with `ok: false` is [`ProxyError::Refused`] with its words.
    async fn exchange(
        &self,
        req: &ControlRequest,
        socket: Option<RawFd>,
        within: Duration,
    ) -> Result<(ControlReply, Vec<OwnedFd>), ProxyError> {
        let unreachable = |source| ProxyError::Unreachable {
            socket: self.socket.clone(),
            source,
        };
        let exchange = async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(unreachable)?;
            let mut line = serde_json::to_string(req)
                .map_err(|e| ProxyError::refused(format!("the request to the node proxy: {e}")))?;
            line.push('\n');
            let fds: Vec<RawFd> = socket.into_iter().collect();
            fdpass::send(&stream, line.as_bytes(), &fds)
                .await
                .map_err(unreachable)?;
            let (answer, fds) = fdpass::Lines::default()
                .next(&stream)
                .await
                .map_err(unreachable)?
                .ok_or(ProxyError::Closed)?;
            let reply = serde_json::from_str::<ControlReply>(&answer)
                .map_err(|source| ProxyError::Garbled { answer, source })?;
            Ok::<_, ProxyError>((reply, fds))
        };
        let (reply, fds) = tokio::time::timeout(within, exchange)
            .await
            .map_err(|_| ProxyError::NoAnswer(within))??;
        if reply.ok {
            Ok((reply, fds))
        } else {
            Err(ProxyError::Refused {
                error: reply.error,
                stale: reply.stale,
            })
        }
    }

    pub(crate) async fn call(&self, req: &ControlRequest) -> Result<ControlReply, ProxyError> {
        self.exchange(req, None, CONTROL_TIMEOUT)
            .await
            .map(|(r, _)| r)
    }

    /// Routes as `route` says, handing the proxy the listening socket for its address.
    pub(crate) async fn set_route(
        &self,
        route: RouteSpec,
        socket: Option<RawFd>,
    ) -> Result<(), ProxyError> {
        self.exchange(&ControlRequest::SetRoute { route }, socket, CONTROL_TIMEOUT)
            .await
            .map(drop)
    }

    pub(crate) async fn remove_route(
        &self,
        listen: SocketAddr,
        generation: u64,
    ) -> Result<(), ProxyError> {
        self.call(&ControlRequest::RemoveRoute { listen, generation })
            .await
            .map(drop)
    }

    /// The proxy's routes (its pid and newest generation with them), within `within`.
    pub(crate) async fn table(&self, within: Duration) -> Result<ControlReply, ProxyError> {
        self.exchange(&ControlRequest::Table, None, within)
            .await
            .map(|(r, _)| r)
    }

    /// A duplicate of the proxy's listening socket on `listen`.
    pub(crate) async fn listener(
        &self,
        listen: SocketAddr,
    ) -> Result<std::net::TcpListener, ProxyError> {
        let (_, fds) = self
            .exchange(&ControlRequest::Listener { listen }, None, CONTROL_TIMEOUT)
            .await?;
        let fd = fds.into_iter().next().ok_or_else(|| {
            ProxyError::refused(format!("the node proxy sent no socket for {listen}"))
        })?;
        let listener = std::net::TcpListener::from(fd);
        match listener.local_addr() {
            Ok(addr) if addr == listen => Ok(listener),
            Ok(addr) => Err(ProxyError::refused(format!(
                "the node proxy sent the socket of {addr} for {listen}"
            ))),
            Err(e) => Err(ProxyError::refused(format!(
                "the node proxy's socket for {listen}: {e}"
            ))),
        }
    }

    pub(crate) async fn stats(&self) -> Result<Vec<RouteStats>, ProxyError> {
        self.call(&ControlRequest::Stats).await.map(|r| r.routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_with_its_op() {
        let r: ControlRequest = serde_json::from_str(
            r#"{"op":"set_route","route":{"listen":"127.0.0.1:8000","mode":"tcp","backends":[{"addr":"127.0.0.1:9000","release":2}],"hold_timeout_ms":5,"generation":9}}"#,
        )
        .unwrap();
        match r {
            ControlRequest::SetRoute { route } => {
                assert_eq!(route.mode, ProxyMode::Tcp);
                assert_eq!(route.backends[0].release, 2);
                assert_eq!(route.generation, 9);
            }
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&ControlRequest::Stats).unwrap(),
            r#"{"op":"stats"}"#
        );
        let old: ControlRequest =
            serde_json::from_str(r#"{"op":"remove_route","listen":"127.0.0.1:8000"}"#).unwrap();
        assert!(matches!(
            old,
            ControlRequest::RemoveRoute { generation: 0, .. }
        ));
        let reply: ControlReply = serde_json::from_str(r#"{"ok":true}"#).unwrap();
        assert!(reply.ok && !reply.stale && reply.table.is_empty() && reply.pid == 0);
    }
}
