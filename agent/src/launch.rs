//! What a release's processes get, in one place for the deploy and for recovery: the
//! directory, variables (with the owner's secrets, read at each start, never recorded),
//! PATH, the user to run as, and the instance that supervises them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::deployment::Deployment;
use crate::instance::InstanceConfig;
use crate::process::Launch;
use crate::proxy::{BackendSpec, RouteSpec};
use crate::store::ReleaseRecord;
use crate::supervisor::Supervisor;

/// Where apps and the node proxy listen on this node, from the agent's `app_host`: pure, so
/// each rule is a unit test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppHost(pub IpAddr);

impl AppHost {
    /// The address apps listen on behind the node proxy: the app host itself when it is a
    /// loopback address (several agents on one machine, each on its own 127.0.0.x, never
    /// pick each other's ports), else 127.0.0.1.
    pub(crate) fn private_ip(self) -> IpAddr {
        match self.0 {
            ip if ip.is_loopback() => ip,
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Where an instance listening on private port `port` is reached.
    pub(crate) fn private_address(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.private_ip(), port)
    }

    /// Where an instance listens: its private port behind the node proxy, or (without one:
    /// `strategy: recreate`) the deployment's `port` on the app host.
    pub(crate) fn bind_address(self, port: u16, private_port: Option<u16>) -> (IpAddr, u16) {
        match private_port {
            Some(p) => (self.private_ip(), p),
            None => (self.0, port),
        }
    }

    /// Where the deployment's clients connect: its `port` on the app host.
    pub(crate) fn public_address(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.0, port)
    }
}

/// Everything an app (or its start script, or `exec`) of `d` gets: directory, variables
/// (`HOST` and `PORT` say where to listen), PATH, its user and walls.
pub(crate) async fn launch(
    sup: &Supervisor,
    d: &Deployment,
    release: &ReleaseRecord,
    dir: &Path,
    private_port: Option<u16>,
) -> Launch {
    let spec = &release.spec;
    let (host, port) = sup.app_host().bind_address(release.spec.port, private_port);
    let mut env: Vec<(String, String)> = vec![
        ("PORT".into(), port.to_string()),
        ("HOST".into(), host.to_string()),
        ("DEPLOYMENT_NAME".into(), spec.name.clone()),
        ("DEPLOYMENT_RELEASE".into(), release.number.to_string()),
        // Where clients reach it (behind the node proxy, not where it listens).
        ("DEPLOYMENT_URL".into(), sup.app_url(spec.port)),
        ("GIT_COMMIT".into(), release.commit.clone()),
        // Its own directory, kept across releases, rollbacks and restarts.
        (
            "DATA_DIR".into(),
            sup.layout().data(&spec.name).to_string_lossy().into_owned(),
        ),
    ];
    // Model and package caches that outlive releases, rollbacks and restarts: in the
    // deployment's own directory, so they are its identity's alone (`--env-var` overrides).
    let cache = sup.layout().data(&spec.name).join(".cache");
    for (var, dir) in [
        ("XDG_CACHE_HOME", cache.clone()),
        ("HF_HOME", cache.join("huggingface")),
        ("TORCH_HOME", cache.join("torch")),
    ] {
        env.push((var.into(), dir.to_string_lossy().into_owned()));
    }
    if let Some(venv_dir) = &release.venv_dir {
        env.push((
            "VIRTUAL_ENV".into(),
            venv_dir.to_string_lossy().into_owned(),
        ));
    }
    env.extend(spec.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Read at each start, never kept in the record.
    match sup.secrets().env_values(&spec.owner, &spec.secrets).await {
        Ok(values) => env.extend(values),
        Err(missing) => {
            tracing::warn!(deployment = %spec.name, missing = ?missing, "secrets are missing; the app starts without them")
        }
    }
    Launch {
        command: spec.command.clone(),
        cwd: dir.join(&spec.workdir),
        env,
        path_prefix: release.venv_dir.as_ref().map(|d| d.join("bin")),
        walls: sup.walls_for(d),
        cgroups: Vec::new(),
    }
}

/// The node proxy's route for `release` served by its instances on `private_ports`, whose
/// listeners must be user `owner`'s (`None`: apps run as the agent's user).
pub(crate) fn route(
    host: AppHost,
    release: &ReleaseRecord,
    private_ports: &[u16],
    owner: Option<u32>,
) -> RouteSpec {
    RouteSpec {
        listen: host.public_address(release.spec.port),
        mode: release.spec.proxy,
        backends: private_ports
            .iter()
            .map(|p| BackendSpec {
                addr: host.private_address(*p),
                release: release.number,
                owner,
            })
            .collect(),
        hold_timeout_ms: release.spec.hold_timeout.as_millis() as u64,
        name: release.spec.name.clone(),
        // Numbered when it is sent.
        generation: 0,
        // The agent's, set by the node proxy's side of the agent.
        connections: Default::default(),
        sleeping: None,
    }
}

/// The configuration of `d`'s instance `replica` (0: the first) of `release`, on
/// `private_port` behind the node proxy if it has one.
pub(crate) async fn instance_config(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    release: &ReleaseRecord,
    private_port: Option<u16>,
    replica: usize,
) -> InstanceConfig {
    let spec = &release.spec;
    let dir = sup.layout().release(&spec.name, release.number);
    let (host, port) = sup.app_host().bind_address(release.spec.port, private_port);
    InstanceConfig {
        name: spec.name.clone(),
        release: release.number,
        limits: crate::limits::Limits {
            memory: spec.resources.memory,
            cpus: spec.resources.cpus,
            pids: spec.resources.pids,
        },
        launch: with_gpus(
            sup,
            spec,
            replica,
            launch(sup, d, release, &dir, private_port).await,
        ),
        log: sup.layout().app_log(&spec.name),
        host,
        port,
        health: spec.health.clone(),
        restart: spec.restart,
        kill_timeout: spec.kill_timeout,
        observer: sup.observer(d, replica, private_port),
        tracker: sup.tracker().clone(),
        launcher: Arc::new(crate::instance::Processes),
    }
}

/// On a node with GPUs: replica `replica` gets the whole GPUs its spec asks for (the same
/// ones again when it restarts), `CUDA_VISIBLE_DEVICES`/`NVIDIA_VISIBLE_DEVICES` naming
/// them (empty: none), and the device files of the others masked in its namespace.
fn with_gpus(
    sup: &Supervisor,
    spec: &crate::spec::Spec,
    replica: usize,
    mut launch: Launch,
) -> Launch {
    let mut pool = sup.gpu_pool();
    if pool.total() == 0 {
        return launch;
    }
    let holder = crate::gpus::holder(&spec.name, replica as u32);
    let before = pool.held(&holder);
    let assigned = match spec.resources.gpus {
        0 => {
            pool.release(&holder);
            Vec::new()
        }
        n => pool.assign(&holder, n).unwrap_or_else(|e| {
            tracing::error!(deployment = %spec.name, error = %e, "no GPUs for this instance");
            Vec::new()
        }),
    };
    launch.env.extend(crate::gpus::env_for(&assigned));
    if let Some(w) = &mut launch.walls {
        w.hidden_devices = crate::gpus::hidden_devices(pool.gpus(), &assigned);
    }
    drop(pool);
    if assigned != before {
        // Only a change is written (the file is fsynced).
        sup.save_gpus();
    }
    launch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_apps_and_the_proxy_listen() {
        let own: AppHost = AppHost("127.77.3.4".parse().unwrap());
        assert_eq!(own.private_ip().to_string(), "127.77.3.4");
        assert_eq!(own.private_address(41000).to_string(), "127.77.3.4:41000");
        assert_eq!(own.public_address(8000).to_string(), "127.77.3.4:8000");
        // A VM's own address, or every interface: apps listen privately on 127.0.0.1.
        for host in ["10.0.0.5", "0.0.0.0"] {
            let vm = AppHost(host.parse().unwrap());
            assert_eq!(vm.private_ip().to_string(), "127.0.0.1");
            assert_eq!(vm.bind_address(8000, Some(41000)), (vm.private_ip(), 41000));
            assert_eq!(vm.bind_address(8000, None), (vm.0, 8000));
            assert_eq!(vm.public_address(8000), SocketAddr::new(vm.0, 8000));
        }
    }

    #[test]
    fn a_route_sends_to_the_private_ports_of_its_owner() {
        let release = crate::deployment::tests::release(3, "user:alice");
        let host = AppHost("10.0.0.5".parse().unwrap());
        let route = route(host, &release, &[41000, 41001], Some(61200));
        assert_eq!(route.listen.to_string(), "10.0.0.5:8000");
        assert_eq!(route.name, "app");
        let to: Vec<String> = route.backends.iter().map(|b| b.addr.to_string()).collect();
        assert_eq!(to, ["127.0.0.1:41000", "127.0.0.1:41001"]);
        assert!(route
            .backends
            .iter()
            .all(|b| b.release == 3 && b.owner == Some(61200)));
        // Apps that run as the agent's user: any listener is theirs.
        let shared = super::route(host, &release, &[41000], None);
        assert_eq!(shared.backends[0].owner, None);
    }
}
