//! The flags that set declaration fields, shared by `run` and `declare deployment`.
//! Every declaration field has one; given flags override the declaration.

use crate::decl::{self, DeploymentDecl, Scalar};
use crate::error::bad_input;

#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct DeployFlags {
    /// The env to deploy to (NAME.env.yaml, or the built-in local) [default: core.default_env, else local]
    #[arg(long)]
    pub env: Option<String>,
    /// Git repository: https://, ssh (git@host:path), file:// or a local path
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch, tag or (short) commit to deploy [default: the remote HEAD]
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Directory inside the repository to run in [default: the repository root]
    #[arg(long)]
    pub workdir: Option<String>,
    /// The command that starts the app, run with `sh -c` (bind $HOST:$PORT)
    #[arg(long)]
    pub command: Option<String>,
    /// Extra pip package (repeatable), e.g. --pip scikit-learn==1.5.2
    #[arg(long = "pip", value_name = "PKG")]
    pub pip: Vec<String>,
    /// Extra apt package (repeatable; only where the agent may use apt)
    #[arg(long = "apt", value_name = "PKG")]
    pub apt: Vec<String>,
    /// A requirements file, relative to the workdir, installed with pip
    #[arg(long, value_name = "FILE")]
    pub requirements: Option<String>,
    /// A script (relative to the workdir) run before the command; must exit 0
    #[arg(long, value_name = "FILE")]
    pub start_script: Option<String>,
    /// An environment variable for the app (repeatable)
    #[arg(long = "env-var", value_name = "KEY=VALUE")]
    pub env_var: Vec<String>,
    /// A secret the app gets as an env var (repeatable; the value lives on the agent)
    #[arg(long = "secret", value_name = "NAME")]
    pub secret: Vec<String>,
    /// The port the app listens on [default: 8000]
    #[arg(long, allow_negative_numbers = true)]
    pub port: Option<i64>,
    /// HTTP path checked for health (2xx/3xx); without it, a TCP connect
    #[arg(long, value_name = "PATH")]
    pub health_path: Option<String>,
    /// How long a new release may take to be ready (a model loading); the deploy says
    /// how it goes every 5 s meanwhile (--health-timeout is its old name) [default: 2m]
    #[arg(long, alias = "health-timeout", value_name = "DURATION")]
    pub startup_timeout: Option<String>,
    /// How often a running app is checked; each check must answer within the interval
    /// (at least 2s, at most 5s) [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Consecutive failed checks after which a running instance is unhealthy: the node
    /// proxy sends it no new requests (other replicas take them) and its health endpoint
    /// says so, until a check passes again [default: 3]
    #[arg(long, value_name = "N")]
    pub unhealthy_after: Option<u32>,
    /// Consecutive failed checks after which it is restarted (at least --unhealthy-after;
    /// not with --restart never) [default: 6]
    #[arg(long, value_name = "N")]
    pub restart_after: Option<u32>,
    /// A request sent to each instance of a new release once it is ready and before
    /// traffic moves to it; an error answer fails the deploy and the previous release
    /// keeps serving (repeatable; replaces the declaration's list): METHOD PATH [BODY],
    /// e.g. 'POST /predict {"rows": [[5.1, 3.5, 1.4, 0.2]]}'
    #[arg(long = "warmup", value_name = "METHOD PATH [BODY]")]
    pub warmup: Vec<String>,
    /// Where `deployctl apply` POSTs [default: /predict]
    #[arg(long, value_name = "PATH")]
    pub apply_path: Option<String>,
    /// Who owns it: user:NAME or group:NAME [default: user:$USER, the caller]
    #[arg(long)]
    pub owner: Option<String>,
    /// always | on-failure | never [default: on-failure]
    #[arg(long)]
    pub restart: Option<String>,
    /// Grace period between SIGTERM and SIGKILL when stopping [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub kill_timeout: Option<String>,
    /// switch: a new release starts beside the old one behind the node proxy and traffic
    /// switches when it is healthy; recreate: stop, then start (apps that cannot bind $PORT) [default: switch]
    #[arg(long, value_name = "STRATEGY")]
    pub strategy: Option<String>,
    /// What the node proxy speaks on the port: http | tcp [default: http]
    #[arg(long, value_name = "MODE")]
    pub proxy: Option<String>,
    /// How long the old release may finish its in-flight requests after a switch [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// How long requests wait while no instance is healthy (a restart) [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub hold_timeout: Option<String>,
    /// No request through the node proxy for this long (health checks and scrapes do not
    /// count): the app is stopped and sleeps, its memory and GPUs free for others; its
    /// port stays open and the next request wakes it, e.g. 15m [default: never]
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// How long a request to a sleeping app waits for it to start and pass its health
    /// check; then 503 with Retry-After [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub wake_timeout: Option<String>,
    /// Processes of the release on each node behind its port, balanced by the node proxy
    /// (least outstanding requests); one that crashes is restarted while the others serve.
    /// Single-threaded Python servers then use the node's cores. N: a fixed count; MIN..MAX
    /// (e.g. 1..4): replicas that follow the load — the agent adds replicas (at once, as
    /// many as the load needs) when the requests in flight per ready replica stay above
    /// --target-in-flight for replicas.scale_up_after (default 10s), and removes one,
    /// drained, when one less would still be under it for replicas.scale_down_after
    /// (default 60s); within the node's room (memory limits, GPUs). MIN 0: scale to zero (no
    /// request for replicas.scale_down_after: it sleeps, as with --idle-timeout) [default: 1]
    #[arg(long, value_name = "N|MIN..MAX")]
    pub replicas: Option<String>,
    /// With --replicas MIN..MAX: the requests in flight per ready replica the agent aims
    /// at [default: 1]
    #[arg(long, value_name = "N")]
    pub target_in_flight: Option<u32>,
    /// The Python version the environment is made with, e.g. 3.11 (found on each node by
    /// uv's discovery, never downloaded) [default: the node's python3]
    #[arg(long, value_name = "VERSION")]
    pub python: Option<String>,
    /// Hard memory limit of each replica: bytes, or a number with K, M, G or T (binary:
    /// 1G = 1024 MiB), e.g. 512M, 4G, 1.5G, 8GiB; at least 4M [default: no limit]
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU time quota of each replica, in cores: 0.5 is half a core's time, 2 two cores'
    /// (more than 0, at most 1024) [default: no limit]
    #[arg(long, value_name = "CORES")]
    pub cpus: Option<String>,
    /// Processes and threads each replica may have, e.g. 512 (at least 8) [default: no limit]
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// Whole GPUs per replica, e.g. 1, assigned by the agent (CUDA_VISIBLE_DEVICES)
    /// [default: 0]
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Memory limit of the build (the packages step and the start script), a size like
    /// --memory, e.g. 8G [default: no limit]
    #[arg(long, value_name = "SIZE")]
    pub build_memory: Option<String>,
    /// A model or data file the release gets read-only at PATH (relative to the workdir),
    /// fetched once per node and verified by its sha256 (repeatable; an entry of the same
    /// PATH is replaced): PATH=URL#sha256=HEX, with &extract to unpack a .tar.gz,
    /// .tar.zst or .zip to a directory at PATH. URL: https://, http:// or file://
    #[arg(long = "artifact", value_name = "PATH=URL#sha256=HEX")]
    pub artifact: Vec<String>,
}

impl DeployFlags {
    /// Lays the given flags over `d`. A relative local `--repo` is taken from `cwd` and
    /// kept relative to `root`, the declaration's directory. Long on purpose: one line per
    /// flag, in `run --help`'s order.
    pub(crate) fn apply(
        &self,
        d: &mut DeploymentDecl,
        cwd: &std::path::Path,
        root: &std::path::Path,
    ) -> anyhow::Result<()> {
        fn set(field: &mut Option<String>, v: &Option<String>) {
            if let Some(v) = v {
                *field = Some(v.clone());
            }
        }
        set(&mut d.env, &self.env);
        if let Some(repo) = &self.repo {
            d.repo = decl::declared_repo(repo, cwd, root);
        }
        set(&mut d.git_ref, &self.git_ref);
        set(&mut d.workdir, &self.workdir);
        if let Some(c) = &self.command {
            d.command = c.clone();
        }
        if !self.pip.is_empty() {
            d.packages.pip = self.pip.clone();
        }
        if !self.apt.is_empty() {
            d.packages.apt = self.apt.clone();
        }
        set(&mut d.requirements, &self.requirements);
        set(&mut d.start_script, &self.start_script);
        for kv in &self.env_var {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad_input(format!("--env-var: {kv:?} must be KEY=VALUE")))?;
            d.env_vars
                .insert(k.trim().to_string(), Scalar::Text(v.to_string()));
        }
        if !self.secret.is_empty() {
            d.secrets = self.secret.clone();
        }
        if let Some(p) = self.port {
            d.port = Some(p);
        }
        set(&mut d.health.path, &self.health_path);
        set(&mut d.health.startup_timeout, &self.startup_timeout);
        set(&mut d.health.interval, &self.health_interval);
        if let Some(n) = self.unhealthy_after {
            d.health.unhealthy_after = Some(n);
        }
        if let Some(n) = self.restart_after {
            d.health.restart_after = Some(n);
        }
        if !self.warmup.is_empty() {
            d.warmup = self
                .warmup
                .iter()
                .map(|w| decl::Warmup::parse_flag(w.as_str()))
                .collect::<anyhow::Result<_>>()?;
        }
        set(&mut d.apply_path, &self.apply_path);
        set(&mut d.owner, &self.owner);
        set(&mut d.restart, &self.restart);
        set(&mut d.kill_timeout, &self.kill_timeout);
        set(&mut d.strategy, &self.strategy);
        set(&mut d.proxy, &self.proxy);
        set(&mut d.drain_timeout, &self.drain_timeout);
        set(&mut d.hold_timeout, &self.hold_timeout);
        set(&mut d.idle_timeout, &self.idle_timeout);
        set(&mut d.wake_timeout, &self.wake_timeout);
        self.apply_replicas(d)?;
        set(&mut d.python, &self.python);
        // A size: a plain number of bytes stays a number in the declaration.
        let size = |v: &String| match v.trim().parse::<i64>() {
            Ok(n) => Scalar::Int(n),
            Err(_) => Scalar::Text(v.clone()),
        };
        let r = &mut d.resources;
        if let Some(m) = &self.memory {
            r.memory = Some(size(m));
        }
        if let Some(c) = &self.cpus {
            let cores = c.trim().parse::<f64>().map_err(|_| {
                bad_input(format!(
                    "--cpus: {c:?} is not a number of cores; write e.g. 0.5, 1.5 or 2"
                ))
            })?;
            r.cpus = Some(cores);
        }
        if let Some(n) = self.pids {
            r.pids = Some(n);
        }
        if let Some(n) = self.gpus {
            r.gpus = (n > 0).then_some(n);
        }
        if let Some(m) = &self.build_memory {
            r.build_memory = Some(size(m));
        }
        decl::artifacts::merge(&mut d.artifacts, &self.artifact)?;
        Ok(())
    }
}

impl DeployFlags {
    /// `--replicas` and `--target-in-flight` over the declaration's `replicas`: a range
    /// keeps the declaration's target and windows unless given.
    fn apply_replicas(&self, d: &mut DeploymentDecl) -> anyhow::Result<()> {
        if let Some(v) = &self.replicas {
            d.replicas = Some(match (decl::Replicas::parse_flag(v)?, d.replicas.take()) {
                (decl::Replicas::Auto(new), Some(decl::Replicas::Auto(old))) => {
                    decl::Replicas::Auto(decl::Autoscale {
                        min: new.min,
                        max: new.max,
                        ..old
                    })
                }
                (new, _) => new,
            });
        }
        if let Some(n) = self.target_in_flight {
            match &mut d.replicas {
                Some(decl::Replicas::Auto(a)) => a.target_in_flight = Some(n),
                _ => {
                    return Err(bad_input(
                        "--target-in-flight: needs replicas that follow the load: --replicas MIN..MAX (e.g. 1..4), or replicas: {min, max} in the declaration",
                    ))
                }
            }
        }
        Ok(())
    }
}

/// A fresh declaration with its object type filled in.
pub(crate) fn new_declaration() -> DeploymentDecl {
    DeploymentDecl {
        object_type: "deployment".into(),
        kind: "process".into(),
        ..Default::default()
    }
}
