//! deploy-agent: deploys apps from git onto this node and supervises them.
//!
//! The domain is the [`supervisor::Supervisor`] (deployments, their instances and records)
//! and the deploy [`pipeline`]; [`service`] (gRPC) and [`http`] are thin adapters over it.

#![warn(unreachable_pub)]

pub mod admin;
mod app_user;
mod artifacts;
mod auth;
mod authz;
mod autoscale;
mod capacity;
mod cgroup;
pub mod cidr;
mod clock;
pub mod config;
mod dashboard;
mod deployment;
mod disk;
pub mod error;
mod exec;
mod explain;
mod exposition;
mod fsmode;
mod gpus;
mod health;
mod http;
mod identity;
mod instance;
mod journal;
mod launch;
mod layout;
mod leases;
mod limits;
mod logrotate;
mod logs;
mod logtimes;
mod logwatch;
mod metrics;
mod node;
mod pipeline;
mod ports;
mod process;
mod procstat;
mod proxy;
mod reaper;
mod recover;
mod refusals;
pub mod register;
mod reservations;
mod secrets;
mod service;
mod sleep;
mod sockowner;
mod spec;
mod store;
mod supervisor;
mod tls;
mod tracking;
mod traffic;
mod usage;
mod venvs;
mod walls;

use std::future::Future;
use std::time::Duration;

use deployctl_proto::v1::agent_server::AgentServer;
use tokio::net::TcpListener;

pub use config::Config;
pub use proxy::{inherited_listener, run as run_proxy};
pub use supervisor::hostname;
use supervisor::Supervisor;

/// How often CPU and memory of the apps are sampled.
const USAGE_PERIOD: Duration = Duration::from_secs(2);
/// How often unused venvs are held to their budget (deploys and removes do it too).
const VENV_GC_PERIOD: Duration = Duration::from_secs(600);

/// Runs the agent on the given listeners until `shutdown` completes. Apps keep running
/// when the agent stops; when it starts, it adopts the apps that still run and starts the
/// ones that do not ([`Supervisor::recover`]). In phases: the configuration checked, the
/// supervisor, the background tasks, the HTTP and gRPC servers; at `shutdown`, each
/// stopped.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_exposure(&config)?;
    check_apt(&config)?;
    // Before any app starts: what apps orphan becomes ours, to find, stop and reap.
    reaper::become_subreaper();
    let sup = Supervisor::new(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = spawn_background(&sup);
    let registration = register::spawn(&sup);
    let http_task = tokio::spawn(http::serve(http, sup.clone(), stopped(stop_rx.clone())));
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AgentServer<service::AgentService>>()
        .await;
    let grpc_task = serve_grpc(&sup, grpc, health_service, stopped(stop_rx))?;

    shutdown.await;
    tracing::info!("shutting down; apps keep running");
    if let Some(r) = registration {
        r.stop().await;
    }
    proxy_after_the_agent(&sup).await;
    health
        .set_not_serving::<AgentServer<service::AgentService>>()
        .await;
    let _ = stop_tx.send(true);
    for task in background {
        task.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    sup.tracker().on_shutdown().await;
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), grpc_task).await {
        return Err(anyhow::anyhow!("gRPC server failed: {e}"));
    }
    Ok(())
}

/// Refuses `allow_apt` unless the agent runs as root.
fn check_apt(config: &Config) -> anyhow::Result<()> {
    if config.allow_apt && !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "allow_apt = true needs the agent to run as root (apt-get installs for the whole node); run it as root, or set allow_apt = false"
        );
    }
    Ok(())
}

/// Completes once the agent is told to stop (`rx` turns true).
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Starts the agent's background tasks: recovery (the node proxy first, adopted or started
/// with its persisted routes, then the deployments behind it), the proxy's watch, the
/// toolchain's lookup, the samplers, the reaper, the logs' watch, venv garbage collection
/// and moving off taken ports. Returns what aborts each at shutdown (the toolchain's
/// lookup is left to end), in the order they are aborted.
fn spawn_background(sup: &std::sync::Arc<Supervisor>) -> Vec<tokio::task::AbortHandle> {
    let recovery = {
        let sup = sup.clone();
        tokio::spawn(async move {
            // The node proxy first (adopted, or started with its persisted routes): the
            // deployments behind it are routed again as they are recovered.
            sup.proxy().resume().await;
            sup.recover().await
        })
    };
    let proxy_watch = tokio::spawn(watch_proxy(sup.clone()));
    if sup.venvs().toolchain_is_local() {
        // python3 and uv are looked for now rather than by the first deploy (~0.1 s).
        let sup = sup.clone();
        tokio::spawn(async move {
            sup.venvs().toolchain().await;
        });
    }
    let sampler = tokio::spawn(sample_usage(sup.clone()));
    let traffic = tokio::spawn(sample_traffic(sup.clone()));
    let reaper = tokio::spawn(reaper::reap_orphans());
    let rotator = tokio::spawn(logwatch::run(sup.clone()));
    let log_times = tokio::spawn(note_log_times(sup.clone()));
    let venv_gc = tokio::spawn(collect_venvs(sup.clone()));
    let ports_moved = tokio::spawn(supervisor::move_off_taken_ports(sup.clone()));
    let health_routes = tokio::spawn(supervisor::follow_health(sup.clone()));
    let autoscaler = tokio::spawn(autoscale::run(sup.clone()));
    let idle = tokio::spawn(sleep::idle::watch(sup.clone()));
    let wakes = tokio::spawn(sleep::socket::serve(sup.clone(), sup.proxy().wake_socket()));
    vec![
        autoscaler.abort_handle(),
        idle.abort_handle(),
        wakes.abort_handle(),
        recovery.abort_handle(),
        sampler.abort_handle(),
        traffic.abort_handle(),
        reaper.abort_handle(),
        rotator.abort_handle(),
        log_times.abort_handle(),
        venv_gc.abort_handle(),
        ports_moved.abort_handle(),
        health_routes.abort_handle(),
        proxy_watch.abort_handle(),
    ]
}

/// Starts the gRPC server on `grpc` until `stop` completes: the agent's service (TLS when
/// configured, every request authenticated, each refusal naming its method), health and
/// reflection.
fn serve_grpc(
    sup: &std::sync::Arc<Supervisor>,
    grpc: TcpListener,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(deployctl_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let service = service::AgentService::new(sup.clone());
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = sup.config().tls_paths() {
        let identity = tls::identity(&cert, &key)?;
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| anyhow::anyhow!("TLS with {}: {e}", cert.display()))?;
    }
    let authenticate = service::authenticator(sup.clone());
    let grpc_task = builder
        .add_service(refusals::WithMethod(
            tonic::service::interceptor::InterceptedService::new(
                AgentServer::new(service).max_decoding_message_size(service::MAX_REQUEST_BYTES),
                authenticate,
            ),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(grpc_incoming(grpc), stop);
    Ok(tokio::spawn(grpc_task))
}

/// Refuses a gRPC port reachable from other machines without TLS and authentication,
/// unless `insecure` says so.
pub fn check_exposure(config: &Config) -> anyhow::Result<()> {
    let addr = config.listen.ip();
    let tls = config.tls_paths().is_some();
    let auth = !auth::AuthFile::load(&config.auth_path())?.users.is_empty();
    if addr.is_loopback() || (tls && auth) {
        return Ok(());
    }
    if config.insecure {
        tracing::warn!(%addr, tls, auth, "listening beyond loopback without TLS and authentication (--insecure)");
        return Ok(());
    }
    let missing = match (tls, auth) {
        (false, false) => "TLS and authentication",
        (false, true) => "TLS",
        _ => "authentication (no users)",
    };
    anyhow::bail!(
        "refusing to listen on {addr} without {missing}: run `deploy-agent init` (creates a CA, the agent's certificate and an admin token), or pass --insecure on a trusted network"
    )
}

/// The gRPC connections, with TCP_NODELAY: without it a reply that takes more than one
/// write (a status of many deployments, deploy events in quick succession) waits for the
/// client's delayed ACK, ~40 ms.
fn grpc_incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Samples the apps' CPU and memory in the background, so status answers from memory.
async fn sample_usage(sup: std::sync::Arc<Supervisor>) {
    loop {
        let apps = sup.registry().running_apps();
        sup.usage().sample(apps).await;
        tokio::time::sleep(USAGE_PERIOD).await;
    }
}

/// Keeps the node proxy's counts over time (for `status` and `/metrics`).
async fn sample_traffic(sup: std::sync::Arc<Supervisor>) {
    let mut every = tokio::time::interval(traffic::SAMPLE_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Some(routes) = sup.proxy().stats_if_running().await {
            sup.traffic().record(tokio::time::Instant::now(), routes);
        }
    }
}

/// Says what the node proxy keeps serving once the agent has stopped, and how to stop it
/// (one that serves nothing is stopped).
async fn proxy_after_the_agent(sup: &Supervisor) {
    let Some((pid, routes)) = sup.proxy().on_agent_stop().await else {
        return;
    };
    let served: Vec<String> = routes
        .iter()
        .map(|r| {
            let name = sup
                .registry()
                .all()
                .into_iter()
                .find(|d| {
                    d.current()
                        .is_some_and(|rel| sup.app_host().public_address(rel.spec.port) == r.listen)
                })
                .map(|d| d.name().to_string())
                .unwrap_or_else(|| "a deployment".into());
            format!("{name} on {}", r.listen)
        })
        .collect();
    let n = served.len();
    tracing::info!(
        pid,
        "the node proxy (pid {pid}) keeps serving {n} deployment{} after the agent stops: {}; it stops by itself when the last of them is removed or stopped (`deployctl remove NAME`, `deployctl stop NAME`), or stop it by hand: kill $(cut -d' ' -f1 {})",
        if n == 1 { "" } else { "s" },
        served.join(", "),
        sup.proxy().pid_file().display()
    );
}

/// Watches the node proxy: started again when it exits, replaced when it does not answer,
/// its routes kept as the agent decided them.
async fn watch_proxy(sup: std::sync::Arc<Supervisor>) {
    sup.proxy().watch(|| sup.is_ready()).await;
}

/// Holds unused venvs to their budget now (so `nodes` counts them) and then periodically
/// (their age passes while no deploy runs).
async fn collect_venvs(sup: std::sync::Arc<Supervisor>) {
    loop {
        sup.collect_garbage().await;
        tokio::time::sleep(VENV_GC_PERIOD).await;
    }
}

/// Notes when each deployment's logs grew, so their lines can be stamped (`logs
/// --timestamps`, `--since`).
async fn note_log_times(sup: std::sync::Arc<Supervisor>) {
    let watcher = std::sync::Arc::new(std::sync::Mutex::new(logtimes::Watcher::default()));
    loop {
        tokio::time::sleep(logtimes::WATCH_PERIOD).await;
        let logs = logwatch::all_logs(&sup);
        let w = watcher.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            w.note(&logs, logtimes::now_ms());
        })
        .await;
    }
}
