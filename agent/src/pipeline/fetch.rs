//! fetch: the resolved commit into the repository's mirror (a bare repository the agent
//! keeps per URL), if it is not there already.

use super::events::{self, Events, StepError};
use super::resolve::Source;
use super::{blocking, git, short};
use crate::spec::Spec;

/// Fetches into `mirror`; the commit to check out.
pub(super) async fn fetch(
    spec: &Spec,
    from: &Source,
    mirror: &std::path::Path,
    events: &Events,
) -> Result<git2::Oid, StepError> {
    events
        .step(
            events::FETCH,
            format!("into the mirror {}", mirror.display()),
            async {
                let (m, u, r, a) = (
                    mirror.to_path_buf(),
                    spec.repo.clone(),
                    from.resolved.clone(),
                    from.auth.clone(),
                );
                let (oid, how) =
                    blocking(events::FETCH, move || git::fetch(&m, &u, &r, &a)).await?;
                let c = short(&oid.to_string()).to_string();
                let msg = match how {
                    git::Fetched::Present => format!("already have {c}, nothing to fetch"),
                    git::Fetched::Downloaded => format!("fetched {c}"),
                    git::Fetched::Recloned => {
                        format!("the mirror was unreadable: cloned it again, {c}")
                    }
                };
                Ok((oid, msg))
            },
        )
        .await
}
