//! `deploy-agent`: parses flags, sets up logging, binds the listeners, runs until SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use deploy_agent::config::{Config, FileConfig};

mod commands;
use commands::{admin, Command};

/// The per-node deployctl daemon: deploys apps from git and keeps them healthy.
///
/// Listens for deployctl on --listen (gRPC) and for load balancers on --http-listen
/// (/healthz, /readyz, /deployments/NAME/health, /metrics). Apps keep running when the
/// agent stops; a restarted agent re-adopts them. Settings come from the defaults, then
/// the --config file (TOML), then the flags.
#[derive(Parser, Debug)]
#[command(version, about, long_about, after_long_help = CONFIG_KEYS)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: Args,
}

/// What `--help` says about the config file's keys (scripts/config.toml is an example).
const CONFIG_KEYS: &str = "\
Config file keys (TOML; every one optional; an unknown key is an error):
  listen = \"127.0.0.1:7070\"       gRPC address for deployctl
  http_listen = \"127.0.0.1:7071\"  health endpoints and /metrics for load balancers
  data_dir = \"PATH\"               records, releases, logs, venvs, git mirrors [default: as
                                  root /var/lib/deploy-agent, else ~/.local/share/deploy-agent]
  app_host = \"127.0.0.1\"          where deployments' ports are served (the node proxy binds it)
  log_format = \"text\"             the agent's own log: text or json
  start_script_timeout = \"30m\"    how long a release's start script may run
  install_timeout = \"30m\"         how long installing packages may take
  keep_releases = 3               release directories kept per deployment (rollback)
  log_max_bytes = 10485760        an app's log is rotated as it reaches this size ...
  log_keep = 3                    ... keeping this many older files of at most that size
  installer = \"auto\"              auto (uv when found or installable, else pip), uv or pip
  tls_cert, tls_key = \"PATH\"      serve gRPC over TLS (deploy-agent init makes them)
  auth_file = \"PATH\"              users and groups with tokens [default: DATA_DIR/auth.toml]
  insecure = false                allow a non-loopback gRPC address without TLS and users
  app_uids = \"61184-65519\"        as root, each deployment runs as its own user with a uid
                                  from this range (made with useradd, freed on remove)
  run_as = \"USER\"                 as root, run every app as this one user instead (not root)
  apps_as_agent_user = false      not root, with users: allow apps to run as the agent's user
  ports = \"1024-65535\"            the ports a deployment may ask for (none below 1024)
  overcommit = 1.0                deployments' memory limits may add up to this share of the
                                  node's memory
  cgroups = true                  a cgroup v2 per app instance where the agent may make one
  venv_keep_bytes = 5368709120    unused venvs and artifacts kept for later deploys, at most
                                  this much in all ...
  venv_keep_age = \"14d\"           ... and none unused for longer
  allow_apt = false               deploys may apt-get install Debian packages (agent as root)
  lb_drain = \"4s\"                 remove/recreate behind a load balancer: its health check
                                  answers 503 this long first
  register = \"etcd://HOST:2379/PREFIX\"
                                  announce this agent (address, version, labels, capacity)
                                  in etcd under a lease, for fleet envs; etcd lost: retried
  labels = {zone = \"a\"}           what fleet envs select this agent by (--select zone=a)
  register_ttl = \"10s\"            a stopped or cut-off agent leaves the registry within this
  proxy_header_timeout = \"10s\"    the node proxy closes a connection whose request's head has
                                  not come this long after it opened (or its first byte)
  proxy_idle_timeout = \"75s\"      ... and a kept-alive connection with no request this long
  proxy_max_connections = 10000   connections one deployment may have open through the node
                                  proxy; one more is answered 503 (tcp: closed)
  trusted_proxies = [\"CIDR\"]      load balancers whose X-Forwarded-For the proxy appends to
                                  and whose X-Forwarded-Proto it keeps [default: none: a
                                  client's are replaced by its address and http]
  proxy_threads = N               the node proxy's threads [default: half the cores, at
                                  least 1; the apps need the rest]";

#[derive(clap::Args, Debug)]
struct Args {
    /// A TOML file with any of: listen, http_listen, data_dir, app_host, log_format,
    /// start_script_timeout, install_timeout, keep_releases, log_max_bytes, log_keep, installer,
    /// tls_cert, tls_key, auth_file, insecure, run_as, apps_as_agent_user, cgroups,
    /// venv_keep_bytes, venv_keep_age, allow_apt, lb_drain, register, labels, register_ttl,
    /// proxy_header_timeout, proxy_idle_timeout, proxy_max_connections, trusted_proxies,
    /// proxy_threads. The admin commands (init, user, group) given neither --config nor --data-dir read the system config
    /// /etc/deploy-agent/config.toml when it exists ($DEPLOY_AGENT_SYSTEM_CONFIG: another
    /// path), else use $STATE_DIRECTORY or the default data directory; each names the file
    /// it read or changed.
    #[arg(long, global = true, env = "DEPLOY_AGENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC address for deployctl (port 0: pick a free one and print it) [default: 127.0.0.1:7070].
    #[arg(long, env = "DEPLOY_AGENT_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// HTTP address for health endpoints and metrics [default: 127.0.0.1:7071].
    #[arg(long, env = "DEPLOY_AGENT_HTTP_LISTEN", value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Where releases, environments, mirrors and logs live
    /// [default: as root /var/lib/deploy-agent, else $XDG_DATA_HOME/deploy-agent or
    /// ~/.local/share/deploy-agent].
    #[arg(long, global = true, env = "DEPLOY_AGENT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The address apps bind (their HOST) and that health checks connect to [default: 127.0.0.1].
    #[arg(long, env = "DEPLOY_AGENT_APP_HOST", value_name = "ADDR")]
    app_host: Option<IpAddr>,
    /// Log format [default: text].
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// TLS certificate (PEM) for the gRPC port [default: DATA/tls/agent.pem after `init`].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the gRPC port [default: DATA/tls/agent.key after `init`].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Users and groups [default: DATA/auth.toml]; without users there is no authentication.
    #[arg(long, global = true, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// Listen beyond loopback without TLS and authentication (trusted networks only).
    #[arg(long)]
    insecure: bool,
    /// When running as root: the user apps and start scripts run as.
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
}

/// Defaults, then the config file, then the flags.
fn load_config(args: Args) -> anyhow::Result<Config> {
    let mut config = Config {
        // systemd's StateDirectory=, else the default.
        data_dir: deploy_agent::admin::fallback_data_dir(),
        ..Config::default()
    };
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
    if let (Some(c), Some(k)) = (args.tls_cert, args.tls_key) {
        config.tls_cert = Some(c);
        config.tls_key = Some(k);
    }
    if let Some(v) = args.auth_file {
        config.auth_file = Some(v);
    }
    if args.insecure {
        config.insecure = true;
    }
    if let Some(v) = args.run_as {
        config.run_as = Some(v);
    }
    Ok(config)
}

/// Errors are printed with their chain of causes on one line, never with a backtrace: they
/// are about the user's config, flags or machine (anyhow's `Debug`, which `main` returning
/// `Result` would print, adds a stack backtrace when RUST_BACKTRACE is set).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // Ambiguous files: a usage error (exit 2), like a wrong flag.
            match err.downcast_ref::<deploy_agent::admin::Ambiguous>() {
                Some(_) => std::process::ExitCode::from(2),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Proxy {
        control,
        routes,
        listen_fds,
        threads,
    }) = cli.command
    {
        // The inherited sockets first, before anything else opens a descriptor.
        let taken: Vec<_> = listen_fds
            .iter()
            .map(|fd| deploy_agent::inherited_listener(*fd))
            .collect();
        init_logging("text");
        let mut inherited = Vec::new();
        for socket in taken {
            match socket {
                Ok(l) => inherited.push(l),
                Err(e) => tracing::error!(error = %e, "an inherited listening socket"),
            }
        }
        // The control socket's; the routes are served by threads of their own.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        return runtime.block_on(deploy_agent::run_proxy(control, routes, inherited, threads));
    }
    if let Some(command) = cli.command {
        let mut args = cli.args;
        let found = deploy_agent::admin::find(args.data_dir.is_some(), args.config.as_deref());
        args.config = found.config_file().map(Into::into);
        let auth_file_flag = args.auth_file.is_some();
        let config = load_config(args)?;
        deploy_agent::admin::check_unambiguous(&found, &config)?;
        return admin(command, &config, &found, auth_file_flag);
    }
    let config = load_config(cli.args)?;
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
    // Before binding anything: never expose an open gRPC port, even for a moment.
    deploy_agent::check_exposure(&config)?;
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
