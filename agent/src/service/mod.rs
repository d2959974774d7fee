//! The gRPC adapter. Each method: trace, [`authorize`], one call into the domain (the
//! supervisor, the pipeline, the secret store), map the result back ([`wire`], [`replies`]).
//! Domain errors and refusals become gRPC statuses in one place ([`errors`]).

mod errors;
mod interceptor;
mod replies;
mod wire;

use std::pin::Pin;
use std::sync::Arc;

use deployctl_proto::v1 as pb;
use pb::agent_server::Agent;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

pub(crate) use interceptor::authenticator;
use interceptor::caller;

use crate::auth::Caller;
use crate::authz::{authorize, default_owner, Action, Target};
use crate::pipeline;
use crate::spec::{self, Spec};
use crate::supervisor::Supervisor;

/// Largest request accepted (a deploy request with its env vars is a few KiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 1024 * 1024;

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

    /// A valid name the caller may do `action` to.
    fn allowed(&self, caller: &Caller, action: Action, name: &str) -> Result<(), Status> {
        spec::validate_name(name)?;
        Ok(authorize(caller, action, &self.target(name))?)
    }

    /// The validated spec of a deploy request (its owner filled in), once `caller` may
    /// deploy it.
    fn deployable(&self, caller: &Caller, req: pb::DeployRequest) -> Result<Spec, Status> {
        let raw = req
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: is required"))?;
        let mut spec = Spec::validate(wire::raw_spec(raw))?;
        if spec.owner.is_empty() {
            spec.owner = default_owner(caller, &req.default_owner);
        }
        crate::auth::parse_owner(&spec.owner)?;
        let action = Action::Deploy { owner: &spec.owner };
        authorize(caller, action, &self.target(&spec.name))?;
        Ok(spec)
    }

    /// Whether the caller may see deployment `name`.
    fn sees(&self, caller: &Caller, name: &str) -> bool {
        authorize(caller, Action::See, &self.target(name)).is_ok()
    }

    /// Status of one deployment: "not found" unless the caller may see it (an unowned
    /// leftover is shown to everyone who asks by name, as before).
    fn may_ask_status(&self, caller: &Caller, name: &str) -> Result<(), Status> {
        spec::validate_name(name)?;
        let target = self.target(name);
        if target.owner.is_some() {
            authorize(caller, Action::See, &target)?;
        }
        Ok(())
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
        let (caller, req) = caller(req)?;
        let basis = replies::basis(&req)?;
        let spec = self.deployable(&caller, req)?;
        tracing::info!(deployment = %spec.name, repo = %spec.repo, git_ref = ?spec.git_ref, caller = %caller.user, deploy_id = %basis.deploy_id, expected_generation = ?basis.expected_generation, "deploy requested");
        // The deploy runs to the end even if the client goes away.
        let events = pipeline::spawn(self.sup.clone(), spec, basis)?;
        Ok(Response::new(Box::pin(events.map(wire::event_item))))
    }

    async fn plan(
        &self,
        req: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::PlanReply>, Status> {
        let (caller, req) = caller(req)?;
        // What a deploy may do is what a plan may show.
        let spec = self.deployable(&caller, req)?;
        let plan = pipeline::plan::plan(&self.sup, &spec).await?;
        Ok(Response::new(wire::plan_to_pb(plan)))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let (caller, req) = caller(req)?;
        let name = replies::optional_name(req.name);
        if let Some(n) = &name {
            self.may_ask_status(&caller, n)?;
        }
        let views = self.sup.status(name.as_deref())?;
        // Only what the caller may see, and then the releases of those only.
        let deployments = views.into_iter().filter(|v| self.sees(&caller, &v.name));
        let deployments = deployments.map(|v| {
            let kept = match req.with_releases {
                true => self.sup.registry().get(&v.name).map(|d| d.releases()),
                false => None,
            };
            let mut s = wire::view_to_pb(v);
            s.releases = kept.iter().flatten().map(wire::release_to_pb).collect();
            s
        });
        let mut deployments: Vec<_> = deployments.collect();
        for s in &mut deployments {
            replies::data_dir(self.sup.node(), s, name.is_some()).await;
        }
        Ok(Response::new(pb::StatusReply { deployments }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveReply>, Status> {
        let (caller, req) = caller(req)?;
        self.allowed(&caller, Action::Remove, &req.name)?;
        tracing::info!(deployment = %req.name, caller = %caller.user, "remove requested");
        let removed = self
            .sup
            .remove(&req.name, replies::drain(req.drain_ms), req.keep_data)
            .await?;
        Ok(Response::new(replies::removed_to_pb(removed)))
    }

    async fn stop(
        &self,
        req: Request<pb::StopRequest>,
    ) -> Result<Response<pb::RemoveReply>, Status> {
        let (caller, req) = caller(req)?;
        self.allowed(&caller, Action::Operate, &req.name)?;
        tracing::info!(deployment = %req.name, caller = %caller.user, "stop requested");
        let stopped = self
            .sup
            .stop(&req.name, replies::drain(req.drain_ms))
            .await?;
        Ok(Response::new(replies::removed_to_pb(stopped)))
    }

    async fn restart(
        &self,
        req: Request<pb::RestartRequest>,
    ) -> Result<Response<Self::RestartStream>, Status> {
        let (caller, req) = caller(req)?;
        self.allowed(&caller, Action::Operate, &req.name)?;
        tracing::info!(deployment = %req.name, caller = %caller.user, only_if_stopped = req.only_if_stopped, "restart requested");
        let events = pipeline::spawn_relaunch(self.sup.clone(), &req.name, req.only_if_stopped)?;
        Ok(Response::new(Box::pin(events.map(wire::event_item))))
    }

    async fn exec(
        &self,
        req: Request<tonic::Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let (caller, mut input) = caller(req)?;
        let first = input.message().await?.ok_or_else(|| {
            Status::invalid_argument("the first message names the deployment and the command")
        })?;
        self.allowed(&caller, Action::Operate, &first.name)?;
        tracing::info!(deployment = %first.name, caller = %caller.user, "exec requested");
        let stdin = first.stdin.then(|| replies::stdin_of(input));
        let events = crate::exec::start(self.sup.clone(), &first.name, first.argv, stdin).await?;
        let events = tokio_stream::wrappers::ReceiverStream::new(events);
        Ok(Response::new(Box::pin(
            events.map(|e| Ok(wire::exec_to_pb(e))),
        )))
    }

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let (caller, req) = caller(req)?;
        self.allowed(&caller, Action::See, &req.name)?;
        let reading = replies::reading(&req);
        let chunks = self.sup.logs(&req.name, req.deploy, reading).await?;
        Ok(Response::new(Box::pin(
            chunks.map(|data| Ok(pb::LogChunk { data })),
        )))
    }

    async fn node_info(
        &self,
        req: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoReply>, Status> {
        let (caller, _) = caller(req)?;
        // Only what the caller may see is counted (admins: everything).
        let all = self.sup.registry().all();
        let visible = all.iter().filter(|d| self.sees(&caller, d.name())).count();
        let info = crate::node::info(self.sup.clone(), visible as u32).await;
        Ok(Response::new(info))
    }

    async fn set_secret(
        &self,
        req: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SetSecretReply>, Status> {
        let (caller, req) = caller(req)?;
        authorize_secrets(&caller, &req.owner)?;
        let kind = replies::secret_kind(&req.kind)?;
        let secrets = self.sup.secrets();
        secrets.set(&req.owner, &req.name, req.value, kind).await?;
        tracing::info!(owner = %req.owner, name = %req.name, caller = %caller.user, "secret set");
        Ok(Response::new(pb::SetSecretReply {}))
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsReply>, Status> {
        let (caller, req) = caller(req)?;
        authorize_secrets(&caller, &req.owner)?;
        let secrets = self.sup.secrets().list(&req.owner).await?;
        Ok(Response::new(replies::secrets_to_pb(secrets)))
    }

    async fn remove_secret(
        &self,
        req: Request<pb::RemoveSecretRequest>,
    ) -> Result<Response<pb::RemoveSecretReply>, Status> {
        let (caller, req) = caller(req)?;
        authorize_secrets(&caller, &req.owner)?;
        let found = self.sup.secrets().remove(&req.owner, &req.name).await?;
        tracing::info!(owner = %req.owner, name = %req.name, caller = %caller.user, found, "secret removed");
        Ok(Response::new(replies::secret_removed(found, &req)?))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIReply>, Status> {
        let (caller, _) = caller(req)?;
        Ok(Response::new(replies::who_am_i(caller)))
    }
}

/// A valid owner whose secrets the caller may manage.
fn authorize_secrets(caller: &Caller, owner: &str) -> Result<(), Status> {
    crate::auth::parse_owner(owner)?;
    authorize(caller, Action::ManageSecrets { owner }, &Target::none())?;
    Ok(())
}
