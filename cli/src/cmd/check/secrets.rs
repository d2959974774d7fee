//! Secrets and git credentials the owner lacks on an agent of the env: the app would start
//! without its secret, or the agent could not fetch the repository.

use std::collections::BTreeMap;

use deployctl_proto::v1 as pb;

use super::{Finding, Scope};
use crate::client::{self, Call, Limit, Target};
use crate::decl::{self, DeploymentDecl};
use crate::state;

/// What an owner lacks on one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lack {
    pub agent: String,
    /// `secret NAME` or `a git-https git credential for REPO`.
    pub item: String,
}

/// Per agent: what `new_owner` lacks of the deployment's secrets, and of the kind of git
/// credential `old_owner` uses for its repository. Agents that did not answer are
/// returned apart, with why.
pub(crate) async fn lacking(
    target: &Target,
    d: &DeploymentDecl,
    old_owner: &str,
    new_owner: &str,
) -> (Vec<Lack>, Vec<(String, String)>) {
    let git_kind = if d.repo.starts_with("https://") || d.repo.starts_with("http://") {
        Some("git-https")
    } else if decl::is_url(&d.repo) && !d.repo.starts_with("file://") {
        Some("git-ssh-key")
    } else {
        None
    };
    let (new, old) = (new_owner.to_string(), old_owner.to_string());
    let replies = client::for_each_agent(target, Limit::Answer, move |c: Call| {
        let (new, old) = (new.clone(), old.clone());
        async move {
            let list = |owner: String| {
                let mut c = c.client.clone();
                async move {
                    c.list_secrets(pb::ListSecretsRequest { owner })
                        .await
                        .map(|r| r.into_inner().secrets)
                }
            };
            let have = list(new.clone()).await?;
            // The old owner's, when readable by the caller: which git credential it uses.
            let used = if old == new {
                have.clone()
            } else {
                list(old).await.unwrap_or_default()
            };
            Ok((have, used))
        }
    });
    let (mut lacks, mut unreachable) = (Vec::new(), Vec::new());
    for reply in replies.all().await {
        let (have, used) = match reply.result {
            Ok(r) => r,
            Err(e) => {
                unreachable.push((reply.address, e.message));
                continue;
            }
        };
        for name in &d.secrets {
            if !have.iter().any(|s| &s.name == name && s.kind == "env") {
                lacks.push(Lack {
                    agent: reply.address.clone(),
                    item: format!("secret {name}"),
                });
            }
        }
        if let Some(kind) = git_kind {
            if used.iter().any(|s| s.kind == kind) && !have.iter().any(|s| s.kind == kind) {
                lacks.push(Lack {
                    agent: reply.address.clone(),
                    item: format!("a {kind} git credential for {}", d.repo),
                });
            }
        }
    }
    (lacks, unreachable)
}

/// The findings for `check` and `run`: one per thing lacking, naming the agents. In
/// phases: whether there is anything to check (secrets, or an owner that moves), the
/// env's agents and the owner, what the owner lacks on them, a finding per item lacking
/// and per agent not checked.
pub(super) async fn findings(scope: &Scope<'_>, d: &DeploymentDecl) -> Vec<Finding> {
    let recorded_owner = recorded_owner(scope).await;
    let owner_moves = matches!((&recorded_owner, &d.owner), (Some(r), Some(o)) if r != o);
    if d.secrets.is_empty() && !owner_moves {
        return Vec::new();
    }
    let env = d.env.clone().unwrap_or_else(|| scope.project.default_env());
    let target = match client::resolve_env(scope.project, &env) {
        Ok(t) if scope.autostart => t,
        Ok(t) => t.no_autostart(),
        Err(_) => return Vec::new(), // the deploy itself says what is wrong with the env
    };
    let owner = match super::super::secret::owner_or_caller(&target, d.owner.clone()).await {
        Ok(o) => o,
        Err(e) => {
            return vec![Finding::info(
                "not-checked",
                format!("secrets were not checked: {e:#}"),
                format!("start the env's agents (deployctl nodes --env {env}), then check again"),
            )]
        }
    };
    let old_owner = recorded_owner.unwrap_or_else(|| owner.clone());
    let (lacks, unreachable) = lacking(&target, d, &old_owner, &owner).await;
    let mut by_item: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lacks {
        by_item.entry(l.item).or_default().push(l.agent);
    }
    let all = target.addresses.len();
    let mut out: Vec<Finding> = by_item
        .into_iter()
        .map(|(item, agents)| lack_finding(&item, agents, all, &env, &owner))
        .collect();
    out.extend(
        unreachable
            .into_iter()
            .map(|(agent, why)| not_checked(agent, &why)),
    );
    out
}

/// The deployment's owner as the state records it, if the state can be read.
async fn recorded_owner(scope: &Scope<'_>) -> Option<String> {
    match state::open(scope.project) {
        Ok(store) => store
            .load()
            .await
            .ok()
            .and_then(|st| st.deployments.get(scope.name).map(|e| e.owner.clone())),
        Err(_) => None,
    }
}

/// The warning that `owner` lacks `item` on `agents` (of the `all` of env `env`), with the
/// command that adds it.
fn lack_finding(item: &str, agents: Vec<String>, all: usize, env: &str, owner: &str) -> Finding {
    let check = if item.starts_with("secret ") {
        "missing-secret"
    } else {
        "missing-git-credential"
    };
    let on = if agents.len() == all && all > 1 {
        format!("any agent of env {env}")
    } else {
        agents.join(", ")
    };
    let fix = match item.strip_prefix("secret ") {
        Some(name) => format!(
            "deployctl secret set --env {env} --owner {owner} {name}   (the value from stdin)"
        ),
        None => {
            let kind = if item.contains("git-https") {
                "git-https"
            } else {
                "git-ssh-key"
            };
            format!(
                "deployctl secret set --env {env} --owner {owner} --kind {kind} --from-file FILE NAME"
            )
        }
    };
    let mut f = Finding::warning(check, format!("{owner} has no {item} on {on}"), fix);
    if agents.len() == 1 {
        f.agent = agents.into_iter().next();
    }
    f
}

/// The note that an agent that did not answer was not checked (`why`).
fn not_checked(agent: String, why: &str) -> Finding {
    let mut f = Finding::info(
        "not-checked",
        format!("secrets were not checked on {agent}: {why}"),
        "start the agent (or check the env's addresses), then check again".into(),
    );
    f.agent = Some(agent);
    f
}
