//! resolve: which commit the ref names on the remote (or that it will be known after the
//! fetch), with the owner's git credential when the URL needs one.

use super::events::{self, Events, StepError};
use super::{blocking, git, git_auth, short};
use crate::spec::Spec;
use crate::supervisor::NodeServices;

/// Where a release's code comes from: the resolved ref, the credentials, and the mirror
/// (one per URL, or per URL and owner when the owner has a git credential).
pub(super) struct Source {
    pub resolved: git::Resolved,
    pub auth: git_auth::GitAuth,
    pub mirror_key: String,
}

pub(super) async fn resolve(
    node: &NodeServices,
    spec: &Spec,
    events: &Events,
) -> Result<Source, StepError> {
    let url = spec.repo.clone();
    // A pinned commit is what is resolved; the ref is only its name.
    let wanted = spec.commit.clone().or_else(|| spec.git_ref.clone());
    let name = spec.commit.as_ref().and(spec.git_ref.clone());
    // The owner's git credential, if the URL needs one; a mirror per owner then, so one
    // owner's credential never serves another's fetch.
    let credential = node
        .secrets()
        .git_credential(&spec.owner, &spec.repo)
        .await
        .map_err(|e| StepError::new(events::RESOLVE, e.to_string()))?;
    let mirror_key = match &credential {
        Some(_) => format!("{}#{}", spec.repo, spec.owner),
        None => spec.repo.clone(),
    };
    let auth = git_auth::GitAuth {
        credential,
        known_hosts: node.layout().root.join("known_hosts"),
        refusal: Default::default(),
    };
    let what = format!(
        "{} at {}",
        url,
        wanted.as_deref().unwrap_or("the remote HEAD")
    );
    let resolved = events
        .step(events::RESOLVE, what, async {
            let a = auth.clone();
            let mut r = blocking(events::RESOLVE, move || {
                git::resolve(&url, wanted.as_deref(), &a)
            })
            .await?;
            if let Some(name) = name {
                r.display = name;
            }
            let msg = match r.commit {
                Some(oid) => format!("{} is {}", r.display, short(&oid.to_string())),
                None => format!("{} will be looked up after fetching", r.display),
            };
            Ok((r, msg))
        })
        .await?;
    Ok(Source {
        resolved,
        auth,
        mirror_key,
    })
}
