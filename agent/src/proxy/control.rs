//! The proxy's control socket: a Unix socket (agent-only, 0600) that takes one JSON
//! request per line and answers one JSON line. The agent sets and removes routes and reads
//! the counts it needs to know when an old release has drained.
//!
//! ```text
//! {"op":"set_route","route":{"listen":"10.0.0.5:8000","mode":"http","backends":[{"addr":"127.0.0.1:41234","release":3}],"hold_timeout_ms":10000}}
//! {"op":"remove_route","listen":"10.0.0.5:8000"}
//! {"op":"stats"}
//! -> {"ok":true,"routes":[{"listen":...,"serving":[...],"draining":[...],"unavailable":0}]}
//! -> {"ok":false,"error":"cannot listen on 10.0.0.5:8000: Address already in use"}
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::counters::Counts;
use super::table::{BackendStats, RouteSpec};
use crate::spec::ProxyMode;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ControlRequest {
    SetRoute { route: RouteSpec },
    RemoveRoute { listen: SocketAddr },
    Stats,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ControlReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default)]
    pub routes: Vec<RouteStats>,
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

/// How long the agent waits for the proxy to answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// Sends one request; an answer with `ok: false` is an error with its words.
    pub(crate) async fn call(&self, req: &ControlRequest) -> Result<ControlReply, String> {
        let exchange = async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|e| format!("the node proxy ({}): {e}", self.socket.display()))?;
            let (read, mut write) = stream.into_split();
            let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
            line.push('\n');
            write
                .write_all(line.as_bytes())
                .await
                .map_err(|e| format!("the node proxy: {e}"))?;
            let mut answer = String::new();
            BufReader::new(read)
                .read_line(&mut answer)
                .await
                .map_err(|e| format!("the node proxy: {e}"))?;
            serde_json::from_str::<ControlReply>(&answer)
                .map_err(|e| format!("the node proxy answered {answer:?}: {e}"))
        };
        let reply = tokio::time::timeout(CONTROL_TIMEOUT, exchange)
            .await
            .map_err(|_| "the node proxy did not answer within 5 s".to_string())??;
        if reply.ok {
            Ok(reply)
        } else {
            Err(reply.error)
        }
    }

    pub(crate) async fn set_route(&self, route: RouteSpec) -> Result<(), String> {
        self.call(&ControlRequest::SetRoute { route })
            .await
            .map(drop)
    }

    pub(crate) async fn remove_route(&self, listen: SocketAddr) -> Result<(), String> {
        self.call(&ControlRequest::RemoveRoute { listen })
            .await
            .map(drop)
    }

    pub(crate) async fn stats(&self) -> Result<Vec<RouteStats>, String> {
        self.call(&ControlRequest::Stats).await.map(|r| r.routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_with_its_op() {
        let r: ControlRequest = serde_json::from_str(
            r#"{"op":"set_route","route":{"listen":"127.0.0.1:8000","mode":"tcp","backends":[{"addr":"127.0.0.1:9000","release":2}],"hold_timeout_ms":5}}"#,
        )
        .unwrap();
        match r {
            ControlRequest::SetRoute { route } => {
                assert_eq!(route.mode, ProxyMode::Tcp);
                assert_eq!(route.backends[0].release, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&ControlRequest::Stats).unwrap(),
            r#"{"op":"stats"}"#
        );
    }
}
