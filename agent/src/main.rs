//! `deploy-agent`: parses flags, sets up logging, binds the listeners, runs until SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use deploy_agent::Config;

/// The per-node deployctl daemon: deploys apps from git and keeps them healthy.
///
/// Listens for deployctl on --listen (gRPC) and for load balancers on --http-listen
/// (/healthz, /readyz, /deployments/NAME/health). Apps keep running when the agent stops.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// gRPC address for deployctl (port 0: pick a free one and print it).
    #[arg(long, default_value = "127.0.0.1:7070", env = "DEPLOY_AGENT_LISTEN")]
    listen: SocketAddr,
    /// HTTP address for health endpoints.
    #[arg(
        long,
        default_value = "127.0.0.1:7071",
        env = "DEPLOY_AGENT_HTTP_LISTEN"
    )]
    http_listen: SocketAddr,
    /// Where releases, environments, mirrors and logs live
    /// [default: $XDG_DATA_HOME/deploy-agent or ~/.local/share/deploy-agent].
    #[arg(long, env = "DEPLOY_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The address apps bind (their HOST) and that health checks connect to.
    #[arg(long, default_value = "127.0.0.1", env = "DEPLOY_AGENT_APP_HOST")]
    app_host: IpAddr,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args.log_format);
    let mut config = Config {
        listen: args.listen,
        http_listen: args.http_listen,
        app_host: args.app_host,
        ..Config::default()
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let grpc = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--http-listen)", config.http_listen))?;
    config.listen = grpc.local_addr()?;
    config.http_listen = http.local_addr()?;
    tracing::info!(grpc = %config.listen, http = %config.http_listen, data_dir = %config.data_dir.display(), app_host = %config.app_host, "deploy-agent listening");
    // One line on stdout that scripts and tests wait for.
    println!(
        "deploy-agent ready: grpc={} http={} data_dir={}",
        config.listen,
        config.http_listen,
        config.data_dir.display()
    );
    deploy_agent::run(config, grpc, http, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("DEPLOY_AGENT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
