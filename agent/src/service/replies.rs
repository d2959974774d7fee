//! The smaller requests and replies of the gRPC API, mapped to and from the domain: what a
//! handler would otherwise build field by field.

use std::time::Duration;

use deployctl_proto::v1 as pb;
use tonic::Status;

use crate::auth::Caller;
use crate::secrets::{Info, Kind};
use crate::supervisor::{NodeServices, Removed};

/// `remove` and `stop` answer the same: how the app stopped and how long each drain took.
pub(super) fn removed_to_pb(r: Removed) -> pb::RemoveReply {
    pb::RemoveReply {
        stopped: r.how.as_str().to_string(),
        pid: r.pid.unwrap_or(0),
        lb_drained_ms: r.lb_drained.as_millis() as u64,
        requests_drained_ms: r.requests_drained.as_millis() as u64,
        data_kept: r.data.as_ref().is_some_and(|d| d.kept),
        data_bytes: r.data.as_ref().map_or(0, |d| d.bytes),
        data_dir: r
            .data
            .map(|d| d.dir.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// An optional drain time in milliseconds (none: the agent's `lb_drain` rule).
pub(super) fn drain(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

/// What a deploy request asks beside its spec; a deploy id that is not 1-64 letters,
/// digits, '.', '_' or '-' is refused.
pub(super) fn basis(req: &pb::DeployRequest) -> Result<crate::pipeline::Basis, Status> {
    let id = &req.deploy_id;
    let ok = id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(Status::invalid_argument(format!(
            "deploy_id: {id:?} is not 1-64 letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(crate::pipeline::Basis {
        expected_generation: req.expected_generation,
        deploy_id: id.clone(),
    })
}

/// A status request names one deployment, or none (all).
pub(super) fn optional_name(name: String) -> Option<String> {
    (!name.is_empty()).then_some(name)
}

pub(super) fn reading(req: &pb::LogsRequest) -> crate::logs::Reading {
    crate::logs::Reading {
        lines: req.lines as usize,
        follow: req.follow,
        since_ms: (req.since_unix_ms > 0).then_some(req.since_unix_ms as i64),
        timestamps: req.timestamps,
    }
}

pub(super) fn secret_kind(kind: &str) -> Result<Kind, Status> {
    Kind::parse(kind).ok_or_else(|| {
        Status::invalid_argument(format!(
            "kind: {kind:?} is not one of env, git-ssh-key, git-https"
        ))
    })
}

pub(super) fn secrets_to_pb(infos: Vec<Info>) -> pb::ListSecretsReply {
    pb::ListSecretsReply {
        secrets: infos
            .into_iter()
            .map(|i| pb::SecretInfo {
                name: i.name,
                kind: i.kind.as_str().to_string(),
                updated_at: i.updated_at,
            })
            .collect(),
    }
}

/// `remove_secret` of a secret the owner does not have is "not found".
pub(super) fn secret_removed(
    found: bool,
    req: &pb::RemoveSecretRequest,
) -> Result<pb::RemoveSecretReply, Status> {
    match found {
        true => Ok(pb::RemoveSecretReply {}),
        false => Err(Status::not_found(format!(
            "{} has no secret {:?}",
            req.owner, req.name
        ))),
    }
}

pub(super) fn who_am_i(caller: Caller) -> pb::WhoAmIReply {
    pb::WhoAmIReply {
        user: caller.user,
        admin: caller.admin,
        groups: caller.groups,
        auth_enabled: caller.authenticated,
    }
}

/// `exec -i`: the client's standard input after the first message, until it says EOF.
pub(super) fn stdin_of(
    mut input: tonic::Streaming<pb::ExecInput>,
) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
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
}

/// A deployment's `DATA_DIR` in its status; with `count` (a status of one deployment) also
/// what it and its caches hold.
pub(super) async fn data_dir(node: &NodeServices, s: &mut pb::DeploymentStatus, count: bool) {
    let dir = node.layout().data(&s.name);
    s.data_dir = dir.display().to_string();
    if count {
        if let Some((all, cache)) = crate::disk::usage::data_usage(dir).await {
            s.data_bytes = Some(all);
            s.cache_bytes = Some(cache);
        }
    }
}
