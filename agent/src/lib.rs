//! deploy-agent: deploys apps from git onto this node and supervises them.
//!
//! The domain is the [`supervisor::Supervisor`] (deployments, their instances and records)
//! and the deploy [`pipeline`]; [`service`] (gRPC) and [`http`] are thin adapters over it.

pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod instance;
pub mod logs;
pub mod node;
pub mod pipeline;
pub mod ports;
pub mod process;
pub mod service;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod usage;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;
use supervisor::Supervisor;

/// How often CPU and memory of the apps are sampled.
const USAGE_PERIOD: Duration = Duration::from_secs(2);

/// Runs the agent on the given listeners until `shutdown` completes. Apps keep running
/// when the agent stops.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sup = Supervisor::new(config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let sampler = {
        let sup = sup.clone();
        tokio::spawn(async move {
            loop {
                let pids = sup.running_pids();
                let s = sup.clone();
                let _ = tokio::task::spawn_blocking(move || s.usage.sample(&pids)).await;
                tokio::time::sleep(USAGE_PERIOD).await;
            }
        })
    };
    let http_task = tokio::spawn(http::serve(http, sup.clone(), stopped(stop_rx.clone())));

    let service = service::AgentService::new(sup.clone());
    let grpc_task = tonic::transport::Server::builder()
        .add_service(deployctl_proto::v1::agent_server::AgentServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc),
            stopped(stop_rx),
        );
    let grpc_task = tokio::spawn(grpc_task);

    shutdown.await;
    tracing::info!("shutting down; apps keep running");
    let _ = stop_tx.send(true);
    sampler.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), grpc_task).await {
        return Err(anyhow::anyhow!("gRPC server failed: {e}"));
    }
    Ok(())
}
