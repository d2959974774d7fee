//! The gRPC adapter: each method converts the request into domain types, makes one call
//! into the supervisor or the pipeline, and maps the result back. Domain errors become gRPC
//! statuses in exactly one place (`impl From<Error> for Status`).

use std::pin::Pin;
use std::sync::Arc;

use deployctl_proto::v1 as pb;
use pb::agent_server::Agent;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Refused};
use crate::error::Error;
use crate::pipeline::{self, events};
use crate::refusals::{RefusalLog, RpcMethod};
use crate::secrets::{self, Kind};
use crate::spec::{self, RawSpec, Spec};
use crate::supervisor::{Supervisor, View};

/// Largest request accepted (a deploy request with its env vars is a few KiB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The interceptor that turns the bearer token into a [`Caller`] on every request; a
/// refusal is logged (rate-limited) with the peer address and the method.
pub fn authenticator(
    sup: Arc<Supervisor>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    let refusals = Arc::new(RefusalLog::default());
    move |mut req: Request<()>| {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let refused = match sup.auth().authenticate(token.as_deref()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                return Ok(req);
            }
            Err(r) => r,
        };
        let method = req
            .extensions()
            .get::<RpcMethod>()
            .map_or("unknown", |m| m.0.as_str());
        let (user, why) = match &refused {
            Refused::NoToken => (None, "no token"),
            Refused::BadToken => (None, "unknown token"),
            Refused::Expired(user) => (Some(user.as_str()), "expired token"),
        };
        refusals.refused(req.remote_addr(), method, user, why);
        // The same answer for a wrong, expired or removed token.
        Err(match refused {
            Refused::NoToken => Status::unauthenticated("this agent requires a token"),
            Refused::BadToken | Refused::Expired(_) => {
                Status::unauthenticated("the token was refused")
            }
        })
    }
}

/// The caller the interceptor found.
fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no caller"))
}

/// Someone else's deployment is "not found": its existence is not confirmed.
fn hidden(name: &str) -> Status {
    Error::NotFound(name.to_string()).into()
}

pub struct AgentService {
    sup: Arc<Supervisor>,
}

impl AgentService {
    pub fn new(sup: Arc<Supervisor>) -> Self {
        AgentService { sup }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match &e {
            Error::InvalidInput { .. } => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::Conflict(_) => Status::failed_precondition(e.to_string()),
            Error::Io { .. } | Error::Internal(_) => Status::internal(e.to_string()),
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    type DeployStream = BoxStream<pb::DeployEvent>;
    type LogsStream = BoxStream<pb::LogChunk>;

    async fn deploy(
        &self,
        req: Request<pb::DeployRequest>,
    ) -> Result<Response<Self::DeployStream>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let raw = req
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: is required"))?;
        let mut spec = Spec::validate(raw_spec(raw))?;
        if spec.owner.is_empty() {
            spec.owner = if caller.authenticated || req.default_owner.is_empty() {
                caller.owner()
            } else {
                req.default_owner.clone()
            };
        }
        secrets::validate_owner(&spec.owner)?;
        if !caller.may(&spec.owner) {
            return Err(Status::permission_denied(format!(
                "{} may not deploy for {}",
                caller.owner(),
                spec.owner
            )));
        }
        // A name another owner holds cannot be deployed; the refusal names neither the
        // owner nor anything else of that deployment (the same words for every owner).
        if !self.visible(&caller, &spec.name) && self.sup.owner_of(&spec.name).is_some() {
            return Err(Status::permission_denied(format!(
                "the name {:?} is not available to {}; choose another name",
                spec.name,
                caller.owner()
            )));
        }
        tracing::info!(deployment = %spec.name, repo = %spec.repo, git_ref = ?spec.git_ref, "deploy requested");
        let (tx, rx) = mpsc::unbounded_channel();
        let ev = events::Events::new(tx).with_metrics(self.sup.metrics().clone());
        // The deploy runs to the end even if the client goes away.
        tokio::spawn(pipeline::deploy(self.sup.clone(), spec, ev));
        let stream = UnboundedReceiverStream::new(rx).map(|e| Ok(event_to_pb(e)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let caller = caller(&req)?;
        let name = req.into_inner().name;
        let name = (!name.is_empty()).then_some(name);
        if let Some(n) = &name {
            spec::validate_name(n)?;
            if self.sup.owner_of(n).is_some_and(|o| !caller.may(&o)) {
                return Err(hidden(n));
            }
        }
        let views = self.sup.status(name.as_deref())?;
        Ok(Response::new(pb::StatusReply {
            deployments: views
                .into_iter()
                .filter(|v| self.visible(&caller, &v.name))
                .map(view_to_pb)
                .collect(),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveReply>, Status> {
        let caller = caller(&req)?;
        let name = req.into_inner().name;
        spec::validate_name(&name)?;
        // What a name nobody owns leaves behind (a directory without a record) is for admins.
        if !self.visible(&caller, &name) {
            return Err(hidden(&name));
        }
        tracing::info!(deployment = %name, caller = %caller.user, "remove requested");
        let (pid, how) = self.sup.remove(&name).await?;
        Ok(Response::new(pb::RemoveReply {
            stopped: how.as_str().to_string(),
            pid: pid.unwrap_or(0),
        }))
    }

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        spec::validate_name(&req.name)?;
        // Logs of a name nobody owns (a directory an older agent left) are for admins.
        if !self.visible(&caller, &req.name) {
            return Err(hidden(&req.name));
        }
        let redactor = self.sup.redactor(&req.name);
        let layout = self.sup.layout();
        if self.sup.get(&req.name).is_none() && !layout.logs(&req.name).exists() {
            return Err(Error::NotFound(req.name).into());
        }
        let path = if req.deploy {
            layout.deploy_log(&req.name)
        } else {
            layout.app_log(&req.name)
        };
        let p = path.clone();
        let lines = req.lines as usize;
        let (initial, offset) = tokio::task::spawn_blocking(move || crate::logs::tail(&p, lines))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Error::io("reading log", &path, e))?;
        let (tx, rx) = mpsc::channel(16);
        if !initial.is_empty() {
            let _ = tx.send(initial).await;
        }
        if req.follow {
            tokio::spawn(async move { crate::logs::follow(&path, offset, tx).await });
        }
        // A secret the app printed does not leave the node.
        let stream = ReceiverStream::new(rx).map(move |data| {
            Ok(pb::LogChunk {
                data: redactor.bytes(data),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn node_info(
        &self,
        req: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoReply>, Status> {
        let caller = caller(&req)?;
        // Only what the caller may see is counted (admins: everything).
        let visible = self
            .sup
            .all()
            .iter()
            .filter(|d| self.visible(&caller, d.name()))
            .count() as u32;
        let sup = self.sup.clone();
        let reply = tokio::task::spawn_blocking(move || crate::node::info(&sup, visible))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(reply))
    }

    async fn set_secret(
        &self,
        req: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SetSecretReply>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        self.secret_owner(&caller, &req.owner)?;
        let kind = Kind::parse(&req.kind).ok_or_else(|| {
            Status::invalid_argument(format!(
                "kind: {:?} is not one of env, git-ssh-key, git-https",
                req.kind
            ))
        })?;
        self.sup
            .secrets()
            .set(&req.owner, &req.name, &req.value, kind)?;
        tracing::info!(owner = %req.owner, name = %req.name, caller = %caller.user, "secret set");
        Ok(Response::new(pb::SetSecretReply {}))
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsReply>, Status> {
        let caller = caller(&req)?;
        let owner = req.into_inner().owner;
        self.secret_owner(&caller, &owner)?;
        let secrets = self
            .sup
            .secrets()
            .list(&owner)?
            .into_iter()
            .map(|i| pb::SecretInfo {
                name: i.name,
                kind: i.kind.as_str().to_string(),
                updated_at: i.updated_at,
            })
            .collect();
        Ok(Response::new(pb::ListSecretsReply { secrets }))
    }

    async fn remove_secret(
        &self,
        req: Request<pb::RemoveSecretRequest>,
    ) -> Result<Response<pb::RemoveSecretReply>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        self.secret_owner(&caller, &req.owner)?;
        if !self.sup.secrets().remove(&req.owner, &req.name)? {
            return Err(Status::not_found(format!(
                "{} has no secret {:?}",
                req.owner, req.name
            )));
        }
        Ok(Response::new(pb::RemoveSecretReply {}))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIReply>, Status> {
        let caller = caller(&req)?;
        Ok(Response::new(pb::WhoAmIReply {
            user: caller.user,
            admin: caller.admin,
            groups: caller.groups,
            auth_enabled: caller.authenticated,
        }))
    }
}

impl AgentService {
    /// Whether the caller may see deployment `name` (what nobody owns: admins only).
    fn visible(&self, caller: &Caller, name: &str) -> bool {
        self.sup
            .owner_of(name)
            .map_or(caller.admin, |o| caller.may(&o))
    }

    /// The caller may manage `owner`'s secrets (a valid owner they belong to, or admin).
    fn secret_owner(&self, caller: &Caller, owner: &str) -> Result<(), Status> {
        secrets::validate_owner(owner)?;
        if caller.may(owner) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} may not manage the secrets of {owner}",
                caller.owner()
            )))
        }
    }
}

fn raw_spec(s: pb::DeploymentSpec) -> RawSpec {
    RawSpec {
        name: s.name,
        repo: s.repo,
        git_ref: s.git_ref,
        workdir: s.workdir,
        command: s.command,
        pip: s.pip,
        apt: s.apt,
        conda: s.conda,
        requirements: s.requirements,
        start_script: s.start_script,
        env_vars: s.env_vars.into_iter().collect(),
        secrets: s.secrets,
        port: s.port,
        health_path: s.health_path,
        health_timeout_ms: s.health_timeout_ms,
        health_interval_ms: s.health_interval_ms,
        restart: s.restart,
        owner: s.owner,
        kill_timeout_ms: s.kill_timeout_ms,
        pinned: s.pinned,
    }
}

fn spec_to_pb(s: &Spec) -> pb::DeploymentSpec {
    pb::DeploymentSpec {
        name: s.name.clone(),
        repo: s.repo.clone(),
        git_ref: s.git_ref.clone().unwrap_or_default(),
        workdir: s.workdir.to_string_lossy().into_owned(),
        command: s.command.clone(),
        pip: s.pip.clone(),
        apt: vec![],
        conda: vec![],
        requirements: path_str(&s.requirements),
        start_script: path_str(&s.start_script),
        env_vars: s.env_vars.clone().into_iter().collect(),
        secrets: s.secrets.clone(),
        port: s.port as u32,
        health_path: s.health.path.clone().unwrap_or_default(),
        health_timeout_ms: s.health.timeout.as_millis() as u64,
        health_interval_ms: s.health.interval.as_millis() as u64,
        restart: s.restart.as_str().to_string(),
        owner: s.owner.clone(),
        kill_timeout_ms: s.kill_timeout.as_millis() as u64,
        pinned: s.pinned.clone(),
    }
}

fn path_str(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn view_to_pb(v: View) -> pb::DeploymentStatus {
    pb::DeploymentStatus {
        owner: v.spec.as_ref().map(|s| s.owner.clone()).unwrap_or_default(),
        port: v.spec.as_ref().map(|s| s.port as u32).unwrap_or(0),
        spec: v.spec.as_ref().map(spec_to_pb),
        name: v.name,
        state: v.state.as_str().to_string(),
        release: v.release,
        git_ref: v.git_ref,
        commit: v.commit,
        pid: v.pid.unwrap_or(0),
        restarts: v.restarts,
        url: v.url,
        uptime_s: v.uptime.as_secs(),
        cpu_percent: v.cpu_percent,
        memory_bytes: v.memory_bytes,
        last_health: v.last_health,
        message: v.message,
        packages_hash: v.packages_hash,
        last_exit_code: v.last_exit_code.unwrap_or(-1),
        next_restart_in_s: v.next_restart_in.map(|d| d.as_secs().max(1)).unwrap_or(0),
        deployed_at: v.deployed_at,
    }
}

fn event_to_pb(e: events::Event) -> pb::DeployEvent {
    use events::Phase;
    use pb::deploy_event::Phase as P;
    let phase = match e.phase {
        Phase::Started => P::Started,
        Phase::Output => P::Output,
        Phase::Done => P::Done,
        Phase::Skipped => P::Skipped,
        Phase::Failed => P::Failed,
        Phase::Info => P::Info,
    };
    pb::DeployEvent {
        step: e.step.to_string(),
        phase: phase as i32,
        message: e.message,
        elapsed_ms: e.elapsed.as_millis() as u64,
        outcome: e.outcome.map(|o| pb::DeployOutcome {
            ok: o.ok,
            release: o.release,
            commit: o.commit,
            url: o.url,
            failed_step: o.failed_step,
            reason: o.reason,
            output_tail: o.output_tail.join("\n"),
            kept_release: o.kept_release,
            kept_healthy: o.kept_healthy,
            kept_restarted: o.kept_restarted,
            kept_pid: o.kept_pid,
            packages_hash: o.packages_hash,
            git_ref: o.git_ref,
            total_ms: o.total.as_millis() as u64,
            frozen: o.frozen,
            owner: o.owner,
        }),
    }
}
