//! `deploy-agent`: parses flags, sets up logging, binds the listeners, runs until SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use deploy_agent::config::{Config, FileConfig};

/// The per-node deployctl daemon: deploys apps from git and keeps them healthy.
///
/// Listens for deployctl on --listen (gRPC) and for load balancers on --http-listen
/// (/healthz, /readyz, /deployments/NAME/health, /metrics). Apps keep running when the
/// agent stops; a restarted agent re-adopts them. Settings come from the defaults, then
/// the --config file (TOML), then the flags.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// A TOML file with any of: listen, http_listen, data_dir, app_host, log_format,
    /// start_script_timeout, install_timeout, keep_releases, log_max_bytes, log_keep, installer.
    #[arg(long, env = "DEPLOY_AGENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC address for deployctl (port 0: pick a free one and print it) [default: 127.0.0.1:7070].
    #[arg(long, env = "DEPLOY_AGENT_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// HTTP address for health endpoints and metrics [default: 127.0.0.1:7071].
    #[arg(long, env = "DEPLOY_AGENT_HTTP_LISTEN", value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Where releases, environments, mirrors and logs live
    /// [default: $XDG_DATA_HOME/deploy-agent or ~/.local/share/deploy-agent].
    #[arg(long, env = "DEPLOY_AGENT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The address apps bind (their HOST) and that health checks connect to [default: 127.0.0.1].
    #[arg(long, env = "DEPLOY_AGENT_APP_HOST", value_name = "ADDR")]
    app_host: Option<IpAddr>,
    /// Log format [default: text].
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

/// Defaults, then the config file, then the flags.
fn load_config(args: Args) -> anyhow::Result<Config> {
    let mut config = Config::default();
    if let Some(path) = &args.config {
        let file = FileConfig::load(path)?;
        file.apply(&mut config, path)?;
    }
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.http_listen {
        config.http_listen = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.app_host {
        config.app_host = v;
    }
    if let Some(v) = args.log_format {
        config.log_format = v;
    }
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = load_config(args)?;
    init_logging(&config.log_format);
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
    let signalled = shutdown_signal()?;
    // systemd (Type=notify): ready once both ports listen. A no-op outside systemd.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
    let shutdown = async {
        signalled.await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    };
    deploy_agent::run(config, grpc, http, shutdown).await
}

/// Completes on SIGTERM or SIGINT. The handlers are installed now, before the agent says it
/// is ready, so a stop right after the start is still a graceful one.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
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
