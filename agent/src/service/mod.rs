//! The gRPC adapter. Each method: trace, [`authorize`], one call into the domain (the
//! supervisor, the pipeline, the secret store), map the result back ([`wire`]). Domain
//! errors become gRPC statuses in exactly one place (`impl From<Error> for Status`), and
//! refusals in another ([`crate::authz::Refusal`]).

mod wire;

use std::pin::Pin;
use std::sync::Arc;

use deployctl_proto::v1 as pb;
use pb::agent_server::Agent;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Refused};
use crate::authz::{authorize, Action, Target};
use crate::error::Error;
use crate::pipeline;
use crate::refusals::{RefusalLog, RpcMethod};
use crate::secrets::Kind;
use crate::spec::{self, Spec};
use crate::supervisor::Supervisor;

/// Largest request accepted (a deploy request with its env vars is a few KiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The interceptor that turns the bearer token into a [`Caller`] on every request; a
/// refusal is logged (rate-limited) with the peer address and the method.
pub(crate) fn authenticator(
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

pub(crate) struct AgentService {
    sup: Arc<Supervisor>,
}

impl AgentService {
    pub(crate) fn new(sup: Arc<Supervisor>) -> Self {
        AgentService { sup }
    }

    /// The deployment `name` as [`authorize`] needs it.
    fn target<'a>(&self, name: &'a str) -> Target<'a> {
        Target {
            name,
            owner: self.sup.owner_of(name),
        }
    }

    /// Whether the caller may see deployment `name`.
    /// The validated spec of a deploy request (its owner filled in), once `caller` may
    /// deploy it.
    fn deployable(&self, caller: &Caller, req: pb::DeployRequest) -> Result<Spec, Status> {
        let raw = req
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: is required"))?;
        let mut spec = Spec::validate(wire::raw_spec(raw))?;
        if spec.owner.is_empty() {
            spec.owner = if caller.authenticated || req.default_owner.is_empty() {
                caller.owner()
            } else {
                req.default_owner.clone()
            };
        }
        crate::auth::parse_owner(&spec.owner)?;
        let action = Action::Deploy { owner: &spec.owner };
        authorize(caller, action, &self.target(&spec.name))?;
        Ok(spec)
    }

    fn sees(&self, caller: &Caller, name: &str) -> bool {
        authorize(caller, Action::See, &self.target(name)).is_ok()
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
    type RestartStream = BoxStream<pb::DeployEvent>;
    type ExecStream = BoxStream<pb::ExecOutput>;

    async fn deploy(
        &self,
        req: Request<pb::DeployRequest>,
    ) -> Result<Response<Self::DeployStream>, Status> {
        let caller = caller(&req)?;
        let spec = self.deployable(&caller, req.into_inner())?;
        tracing::info!(deployment = %spec.name, repo = %spec.repo, git_ref = ?spec.git_ref, caller = %caller.user, "deploy requested");
        // The deploy runs to the end even if the client goes away.
        let events = pipeline::spawn(self.sup.clone(), spec)?;
        Ok(Response::new(Box::pin(
            events.map(|e| Ok(wire::event_to_pb(e))),
        )))
    }

    async fn plan(
        &self,
        req: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::PlanReply>, Status> {
        let caller = caller(&req)?;
        // What a deploy may do is what a plan may show.
        let spec = self.deployable(&caller, req.into_inner())?;
        let plan = pipeline::plan::plan(&self.sup, &spec).await?;
        Ok(Response::new(wire::plan_to_pb(plan)))
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
            let target = self.target(n);
            if target.owner.is_some() {
                authorize(&caller, Action::See, &target)?;
            }
        }
        let views = self.sup.status(name.as_deref())?;
        Ok(Response::new(pb::StatusReply {
            deployments: views
                .into_iter()
                .filter(|v| self.sees(&caller, &v.name))
                .map(wire::view_to_pb)
                .collect(),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveReply>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let name = req.name;
        spec::validate_name(&name)?;
        authorize(&caller, Action::Remove, &self.target(&name))?;
        tracing::info!(deployment = %name, caller = %caller.user, "remove requested");
        let drain = req.drain_ms.map(std::time::Duration::from_millis);
        let removed = self.sup.remove(&name, drain).await?;
        Ok(Response::new(pb::RemoveReply {
            stopped: removed.how.as_str().to_string(),
            pid: removed.pid.unwrap_or(0),
            lb_drained_ms: removed.lb_drained.as_millis() as u64,
            requests_drained_ms: removed.requests_drained.as_millis() as u64,
        }))
    }

    async fn stop(
        &self,
        req: Request<pb::StopRequest>,
    ) -> Result<Response<pb::RemoveReply>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        spec::validate_name(&req.name)?;
        authorize(&caller, Action::Operate, &self.target(&req.name))?;
        tracing::info!(deployment = %req.name, caller = %caller.user, "stop requested");
        let drain = req.drain_ms.map(std::time::Duration::from_millis);
        let stopped = self.sup.stop(&req.name, drain).await?;
        Ok(Response::new(pb::RemoveReply {
            stopped: stopped.how.as_str().to_string(),
            pid: stopped.pid.unwrap_or(0),
            lb_drained_ms: stopped.lb_drained.as_millis() as u64,
            requests_drained_ms: stopped.requests_drained.as_millis() as u64,
        }))
    }

    async fn restart(
        &self,
        req: Request<pb::RestartRequest>,
    ) -> Result<Response<Self::RestartStream>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        spec::validate_name(&req.name)?;
        authorize(&caller, Action::Operate, &self.target(&req.name))?;
        tracing::info!(deployment = %req.name, caller = %caller.user, only_if_stopped = req.only_if_stopped, "restart requested");
        let events = pipeline::spawn_relaunch(self.sup.clone(), &req.name, req.only_if_stopped)?;
        Ok(Response::new(Box::pin(
            events.map(|e| Ok(wire::event_to_pb(e))),
        )))
    }

    async fn exec(
        &self,
        req: Request<tonic::Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let caller = caller(&req)?;
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| {
            Status::invalid_argument("the first message names the deployment and the command")
        })?;
        spec::validate_name(&first.name)?;
        authorize(&caller, Action::Operate, &self.target(&first.name))?;
        tracing::info!(deployment = %first.name, caller = %caller.user, "exec requested");
        let stdin = first.stdin.then(|| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            tokio::spawn(async move {
                while let Ok(Some(m)) = input.message().await {
                    if !m.data.is_empty() && tx.send(m.data).await.is_err() {
                        return;
                    }
                    if m.eof {
                        return;
                    }
                }
            });
            rx
        });
        let events = crate::exec::start(self.sup.clone(), &first.name, first.argv, stdin).await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(events).map(|e| Ok(wire::exec_to_pb(e))),
        )))
    }

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        spec::validate_name(&req.name)?;
        authorize(&caller, Action::See, &self.target(&req.name))?;
        let chunks = self
            .sup
            .logs(
                &req.name,
                req.deploy,
                crate::logs::Reading {
                    lines: req.lines as usize,
                    follow: req.follow,
                    since_ms: (req.since_unix_ms > 0).then_some(req.since_unix_ms as i64),
                    timestamps: req.timestamps,
                },
            )
            .await?;
        Ok(Response::new(Box::pin(
            chunks.map(|data| Ok(pb::LogChunk { data })),
        )))
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
            .filter(|d| self.sees(&caller, d.name()))
            .count() as u32;
        Ok(Response::new(
            crate::node::info(self.sup.clone(), visible).await,
        ))
    }

    async fn set_secret(
        &self,
        req: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SetSecretReply>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        authorize_secrets(&caller, &req.owner)?;
        let kind = Kind::parse(&req.kind).ok_or_else(|| {
            Status::invalid_argument(format!(
                "kind: {:?} is not one of env, git-ssh-key, git-https",
                req.kind
            ))
        })?;
        self.sup
            .secrets()
            .set(&req.owner, &req.name, req.value, kind)
            .await?;
        tracing::info!(owner = %req.owner, name = %req.name, caller = %caller.user, "secret set");
        Ok(Response::new(pb::SetSecretReply {}))
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsReply>, Status> {
        let caller = caller(&req)?;
        let owner = req.into_inner().owner;
        authorize_secrets(&caller, &owner)?;
        let secrets = self
            .sup
            .secrets()
            .list(&owner)
            .await?
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
        authorize_secrets(&caller, &req.owner)?;
        if !self.sup.secrets().remove(&req.owner, &req.name).await? {
            return Err(Status::not_found(format!(
                "{} has no secret {:?}",
                req.owner, req.name
            )));
        }
        tracing::info!(owner = %req.owner, name = %req.name, caller = %caller.user, "secret removed");
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

/// A valid owner whose secrets the caller may manage.
fn authorize_secrets(caller: &Caller, owner: &str) -> Result<(), Status> {
    crate::auth::parse_owner(owner)?;
    authorize(caller, Action::ManageSecrets { owner }, &Target::none())?;
    Ok(())
}
