//! The git steps, with git2: resolve the ref against the remote, fetch into the agent's bare
//! mirror of the repository (only when the commit is not there yet), and check the commit
//! out into the new release directory. All blocking: callers run them in `spawn_blocking`.

use std::path::{Path, PathBuf};

use git2::{Direction, Oid, Repository};
use sha2::{Digest, Sha256};

use super::events::{StepError, CHECKOUT, FETCH, RESOLVE};
use super::git_auth::{self, GitAuth};

/// What the ref resolved to on the remote.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The name a person knows it by: the branch, the tag, or the commit given.
    pub display: String,
    /// The commit, when the remote advertised it (branches, tags, HEAD).
    pub commit: Option<Oid>,
    /// A (possibly short) commit id to look up after fetching.
    pub commit_prefix: Option<String>,
}

/// The mirror directory for a repository URL.
pub(crate) fn mirror_path(git_dir: &Path, url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    git_dir.join(format!("{hex}.git"))
}

/// Lists the remote's refs and finds `git_ref` among them (branch, then tag), or the
/// remote HEAD when `git_ref` is `None`; a hex string that names no ref is taken as a commit.
pub(crate) fn resolve(
    url: &str,
    git_ref: Option<&str>,
    auth: &GitAuth,
) -> Result<Resolved, StepError> {
    check_local_path(url)?;
    let (heads, default_branch) = list_remote(url, auth)?;
    let find = |name: &str| heads.iter().find(|(n, _)| n == name).map(|(_, oid)| *oid);
    let Some(wanted) = git_ref else {
        let oid = find("HEAD").ok_or_else(|| {
            StepError::new(
                RESOLVE,
                format!("repository {url} has no HEAD; give a ref (branch, tag or commit)"),
            )
        })?;
        return Ok(Resolved {
            display: default_branch.unwrap_or_else(|| "HEAD".to_string()),
            commit: Some(oid),
            commit_prefix: None,
        });
    };
    let candidates = [
        format!("refs/heads/{wanted}"),
        format!("refs/tags/{wanted}^{{}}"),
        format!("refs/tags/{wanted}"),
        wanted.to_string(),
    ];
    if let Some(oid) = candidates.iter().find_map(|name| find(name)) {
        return Ok(Resolved {
            display: wanted.to_string(),
            commit: Some(oid),
            commit_prefix: None,
        });
    }
    if looks_like_commit(wanted) {
        // A full id the remote advertises under no name, or a short one: found after fetch.
        return Ok(Resolved {
            display: wanted.to_string(),
            commit: Oid::from_str(wanted).ok().filter(|_| wanted.len() == 40),
            commit_prefix: Some(wanted.to_lowercase()),
        });
    }
    Err(StepError::new(
        RESOLVE,
        format!(
            "ref {wanted:?} is not a branch, tag or commit of {url} (branches: {}; tags: {})",
            list_names(&heads, "refs/heads/"),
            list_names(&heads, "refs/tags/"),
        ),
    ))
}

/// The refs a remote advertises (name, commit).
type Heads = Vec<(String, Oid)>;

/// Every ref the remote advertises, and its default branch (`git ls-remote`).
fn list_remote(url: &str, auth: &GitAuth) -> Result<(Heads, Option<String>), StepError> {
    let mut remote = git2::Remote::create_detached(url).map_err(|e| {
        StepError::new(
            RESOLVE,
            format!("repo {url:?} is not a valid git URL: {}", e.message()),
        )
    })?;
    let conn = remote
        .connect_auth(Direction::Fetch, Some(git_auth::callbacks(auth)), None)
        .map_err(|e| {
            StepError::new(
                RESOLVE,
                format!(
                    "cannot read repository {url}: {}",
                    auth.explain(clean_git_message(&e))
                ),
            )
        })?;
    let heads: Vec<(String, Oid)> = conn
        .list()
        .map_err(|e| {
            StepError::new(
                RESOLVE,
                format!("cannot list refs of {url}: {}", e.message()),
            )
        })?
        .iter()
        .map(|h| (h.name().to_string(), h.oid()))
        .collect();
    let default_branch = conn.default_branch().ok().and_then(|b| {
        b.as_str()
            .ok()
            .map(|s| s.trim_start_matches("refs/heads/").to_string())
    });
    drop(conn);
    if heads.is_empty() {
        return Err(StepError::new(
            RESOLVE,
            format!("repository {url} has no commits"),
        ));
    }
    Ok((heads, default_branch))
}

/// A local repository (a path or file:// URL) must exist and be a git repository; say so
/// plainly instead of git's transport errors.
fn check_local_path(url: &str) -> Result<(), StepError> {
    let path = match url.strip_prefix("file://") {
        Some(p) => Path::new(p),
        None if url.starts_with('/') => Path::new(url),
        None => return Ok(()),
    };
    if !path.exists() {
        return Err(StepError::new(
            RESOLVE,
            format!("repository {url} does not exist (no such directory on the agent's node)"),
        ));
    }
    if Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&str>(),
    )
    .is_err()
    {
        return Err(StepError::new(
            RESOLVE,
            format!("{url} is not a git repository"),
        ));
    }
    Ok(())
}

fn looks_like_commit(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn list_names(heads: &[(String, Oid)], prefix: &str) -> String {
    let mut names: Vec<&str> = heads
        .iter()
        .filter_map(|(n, _)| n.strip_prefix(prefix))
        .filter(|n| !n.ends_with("^{}"))
        .collect();
    if names.is_empty() {
        return "none".to_string();
    }
    let more = names.len().saturating_sub(10);
    names.truncate(10);
    let mut out = names.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// git2 messages carry a class prefix and trailing detail; keep them readable.
fn clean_git_message(e: &git2::Error) -> String {
    let msg = e.message().trim().trim_end_matches('.').to_string();
    match e.code() {
        git2::ErrorCode::NotFound => format!("{msg} (does the repository exist?)"),
        git2::ErrorCode::Auth => format!("{msg} (authentication failed)"),
        _ => msg,
    }
}

/// Opens the mirror, or (re)creates it when it is missing or unreadable.
fn open_mirror(mirror: &Path) -> Result<Repository, StepError> {
    if let Ok(repo) = Repository::open_bare(mirror) {
        return Ok(repo);
    }
    if mirror.exists() {
        tracing::warn!(mirror = %mirror.display(), "mirror is unreadable; recreating it");
        let _ = std::fs::remove_dir_all(mirror);
    }
    Repository::init_bare(mirror).map_err(|e| {
        StepError::new(
            FETCH,
            format!(
                "cannot create git mirror {}: {}",
                mirror.display(),
                e.message()
            ),
        )
    })
}

/// How the mirror came to have the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// It was there already: nothing was fetched.
    Present,
    /// New objects were fetched.
    Downloaded,
    /// The mirror was unreadable or inconsistent, so it was deleted and cloned again.
    Recloned,
}

/// Makes sure the mirror has the resolved commit: fetches branches and tags when it does
/// not. A mirror that fails (corrupt objects, a broken ref) is deleted and cloned again once
/// — not when the disk is full: that fails the step, saying so.
pub(crate) fn fetch(
    mirror: &Path,
    url: &str,
    resolved: &Resolved,
    auth: &GitAuth,
) -> Result<(Oid, Fetched), StepError> {
    let existed = mirror.exists();
    match fetch_into(mirror, url, resolved, auth) {
        Ok(r) => Ok(r),
        // Cloning the mirror again cannot help (it would lose what it has).
        Err(e) if crate::disk::says_full(&e.reason) => Err(disk_full(
            FETCH,
            &format!("cannot fetch {url} into the mirror"),
            mirror,
        )),
        Err(e) if existed => {
            tracing::warn!(mirror = %mirror.display(), reason = %e.reason, "mirror failed; cloning it again");
            discard_mirror(mirror);
            let (oid, _) = fetch_into(mirror, url, resolved, auth)?;
            Ok((oid, Fetched::Recloned))
        }
        Err(e) => Err(e),
    }
}

/// A step that failed for want of space: "WHAT: no space left on the file system of DIR:
/// 0 B free of 64 MiB".
pub(crate) fn disk_full(step: &'static str, what: &str, dir: &Path) -> StepError {
    StepError::new(step, format!("{what}: {}", crate::disk::full_reason(dir)))
}

/// Deletes a mirror (it is rebuilt by the next fetch).
pub(crate) fn discard_mirror(mirror: &Path) {
    if let Err(e) = std::fs::remove_dir_all(mirror) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(mirror = %mirror.display(), error = %e, "cannot delete mirror");
        }
    }
}

fn fetch_into(
    mirror: &Path,
    url: &str,
    resolved: &Resolved,
    auth: &GitAuth,
) -> Result<(Oid, Fetched), StepError> {
    let repo = open_mirror(mirror)?;
    if let Some(oid) = find_commit(&repo, resolved) {
        return Ok((oid, Fetched::Present));
    }
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| StepError::new(FETCH, format!("repo {url:?}: {}", e.message())))?;
    let mut opts = git2::FetchOptions::new();
    opts.remote_callbacks(git_auth::callbacks(auth));
    opts.download_tags(git2::AutotagOption::All);
    remote
        .fetch(
            &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            Some(&mut opts),
            None,
        )
        .map_err(|e| {
            StepError::new(
                FETCH,
                format!(
                    "fetching {url} failed: {}",
                    auth.explain(clean_git_message(&e))
                ),
            )
        })?;
    match find_commit(&repo, resolved) {
        Some(oid) => Ok((oid, Fetched::Downloaded)),
        None => Err(StepError::new(
            FETCH,
            format!(
                "commit {:?} is not in {url} (no branch or tag contains it)",
                resolved.display
            ),
        )),
    }
}

/// The commit, if the mirror has it and its tree is readable.
fn find_commit(repo: &Repository, resolved: &Resolved) -> Option<Oid> {
    let commit = match resolved.commit {
        Some(oid) => repo.find_commit(oid).ok()?,
        None => {
            let prefix = resolved.commit_prefix.as_deref()?;
            repo.revparse_single(prefix).ok()?.peel_to_commit().ok()?
        }
    };
    commit.tree().ok()?;
    Some(commit.id())
}

/// Writes the commit's tree into `target` (a new, empty directory).
pub(crate) fn checkout(mirror: &Path, oid: Oid, target: &Path) -> Result<(), StepError> {
    let fail = |what: &str, e: git2::Error| {
        StepError::new(
            CHECKOUT,
            format!("{what} {}: {}", target.display(), e.message()),
        )
    };
    let repo = Repository::open_bare(mirror).map_err(|e| fail("cannot open mirror for", e))?;
    let commit = repo
        .find_commit(oid)
        .map_err(|e| fail("commit missing for", e))?;
    let tree = commit.tree().map_err(|e| fail("cannot read tree for", e))?;
    std::fs::create_dir_all(target).map_err(|e| {
        StepError::new(CHECKOUT, format!("cannot create {}: {e}", target.display()))
    })?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.target_dir(target).force().update_index(false);
    repo.checkout_tree(tree.as_object(), Some(&mut co))
        .map_err(|e| fail("checkout into", e))
}

/// The commit's summary line, for the progress output.
pub(crate) fn commit_summary(mirror: &Path, oid: Oid) -> String {
    Repository::open_bare(mirror)
        .ok()
        .and_then(|r| {
            r.find_commit(oid).ok().and_then(|c| {
                c.summary()
                    .ok()
                    .flatten()
                    .map(|s| s.chars().take(72).collect())
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_like() {
        assert!(looks_like_commit("9f1c2e"));
        assert!(!looks_like_commit("abc"));
        assert!(!looks_like_commit("main"));
    }

    #[test]
    fn mirror_paths_differ_per_url() {
        let g = Path::new("/data/git");
        assert_ne!(mirror_path(g, "file:///a"), mirror_path(g, "file:///b"));
        assert_eq!(mirror_path(g, "file:///a"), mirror_path(g, "file:///a"));
    }
}
