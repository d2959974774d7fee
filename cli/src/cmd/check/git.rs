//! The repository on this machine: the deployed one itself when it is a local path, or a
//! clone of it that the current directory is in. What is not committed, or committed but
//! not on the ref that will be deployed, works here and is missing there.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::own::OwnFiles;
use super::{some_of, Finding};
use crate::decl;

/// A working tree (or a bare repository) whose commits are the deployed repository's.
#[derive(Debug)]
pub(super) struct Tree {
    /// The top of the working tree (a bare repository's directory).
    pub top: PathBuf,
    pub bare: bool,
    /// The remote the deployed repository is, when this is a clone of it; `None` when it
    /// is the deployed repository itself.
    pub remote: Option<String>,
}

/// Runs git in `dir`; its stdout, or `None` when it failed (or git is missing).
pub(super) fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where the deployed repository's working tree is on this machine, if anywhere.
pub(super) fn locate(repo: &str, cwd: &Path) -> Option<Tree> {
    let local_path = local_path(repo);
    if let Some(p) = &local_path {
        if git(p, &["rev-parse", "--is-bare-repository"]).as_deref() == Some("false\n") {
            let top = git(p, &["rev-parse", "--show-toplevel"])?;
            return Some(Tree {
                top: PathBuf::from(top.trim()),
                bare: false,
                remote: None,
            });
        }
    }
    // The current directory is a clone whose remote is the deployed repository.
    if let Some(top) = git(cwd, &["rev-parse", "--show-toplevel"]) {
        let top = PathBuf::from(top.trim());
        let remotes = git(&top, &["remote", "-v"]).unwrap_or_default();
        let wanted = same_repo_key(repo);
        for line in remotes.lines() {
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(url)) = (parts.next(), parts.next()) {
                let url = if decl::is_url(url) {
                    url.to_string()
                } else {
                    decl::absolute_repo(url, &top)
                };
                if same_repo_key(&url) == wanted {
                    return Some(Tree {
                        top,
                        bare: false,
                        remote: Some(name.to_string()),
                    });
                }
            }
        }
    }
    let p = local_path?;
    (git(&p, &["rev-parse", "--is-bare-repository"]).as_deref() == Some("true\n")).then_some(Tree {
        top: p,
        bare: true,
        remote: None,
    })
}

/// A local path or `file://` URL as a path.
fn local_path(repo: &str) -> Option<PathBuf> {
    if let Some(p) = repo.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    (!decl::is_url(repo)).then(|| PathBuf::from(repo))
}

/// One spelling per repository: no scheme for local paths, no trailing `.git` or `/`,
/// `git@host:path` as `host/path`, lower-case host.
fn same_repo_key(url: &str) -> String {
    let mut s = url.trim().trim_end_matches('/').to_string();
    if let Some(p) = s.strip_prefix("file://") {
        s = std::fs::canonicalize(p)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| p.to_string());
    }
    if let Some(rest) = s.strip_suffix(".git") {
        s = rest.to_string();
    }
    for scheme in ["https://", "http://", "ssh://", "git://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            let rest = rest.split_once('@').map(|(_, r)| r).unwrap_or(rest);
            return rest.replacen(':', "/", 1).to_lowercase();
        }
    }
    if let Some((user_host, path)) = s.split_once(':').filter(|_| decl::is_url(&s)) {
        let host = user_host
            .split_once('@')
            .map(|(_, h)| h)
            .unwrap_or(user_host);
        return format!("{}/{}", host.to_lowercase(), path.trim_start_matches('/'));
    }
    s
}

/// The commit `git_ref` names in `tree` as the agent will resolve it, if it can be known
/// here: with a remote, its remote-tracking branch, a tag, or a commit.
fn target_commit(tree: &Tree, git_ref: Option<&str>) -> Option<String> {
    let rev = |r: &str| git(&tree.top, &["rev-parse", "--verify", "--quiet", r]);
    let found = match (&tree.remote, git_ref) {
        (None, None) => rev("HEAD^{commit}"),
        (None, Some(r)) => rev(&format!("{r}^{{commit}}")),
        (Some(remote), None) => rev(&format!("refs/remotes/{remote}/HEAD^{{commit}}")),
        (Some(remote), Some(r)) => rev(&format!("refs/remotes/{remote}/{r}^{{commit}}"))
            .or_else(|| rev(&format!("refs/tags/{r}^{{commit}}")))
            .or_else(|| {
                looks_like_commit(r)
                    .then(|| rev(&format!("{r}^{{commit}}")))
                    .flatten()
            }),
    };
    found.map(|s| s.trim().to_string())
}

pub(super) fn looks_like_commit(r: &str) -> bool {
    (7..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// Uncommitted files under the workdir; commits the deploy will not have; a ref that is
/// not what is checked out here.
pub(super) fn findings(
    tree: &Tree,
    git_ref: Option<&str>,
    workdir: &str,
    own: &OwnFiles,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if !tree.bare {
        out.extend(uncommitted(tree, workdir, own));
    }
    let (Some(target), Some(head)) = (
        target_commit(tree, git_ref),
        git(&tree.top, &["rev-parse", "--verify", "--quiet", "HEAD"]).map(|s| s.trim().to_string()),
    ) else {
        return out;
    };
    if tree.bare || target == head {
        return out;
    }
    let what = git_ref.unwrap_or("the remote HEAD");
    let short = |c: &str| c.chars().take(7).collect::<String>();
    let branch = git(&tree.top, &["symbolic-ref", "--quiet", "--short", "HEAD"])
        .map(|b| b.trim().to_string());
    let here = match &branch {
        Some(b) => format!("your checkout ({b} at {})", short(&head)),
        None => format!("your checkout ({})", short(&head)),
    };
    let ahead = git(
        &tree.top,
        &["rev-list", "--count", &format!("{target}..{head}")],
    )
    .and_then(|n| n.trim().parse::<u64>().ok())
    .unwrap_or(0);
    if ahead > 0 {
        let commits = if ahead == 1 { "commit" } else { "commits" };
        let fix = match (&tree.remote, &branch) {
            (Some(remote), Some(b)) if Some(b.as_str()) == git_ref || git_ref.is_none() => {
                format!("git push {remote} {b}, then deploy")
            }
            (Some(remote), Some(b)) => {
                format!("git push {remote} {b} and deploy it with --ref {b}, or merge into {what}")
            }
            (None, Some(b)) => {
                format!("deploy what you have with --ref {b}, or merge it into {what}")
            }
            _ => format!(
                "commit onto {what} (or push it), or deploy --ref {}",
                short(&head)
            ),
        };
        let not_pushed = if tree.remote.is_some() {
            " (not pushed)"
        } else {
            ""
        };
        out.push(Finding::warning(
            "not-deployed-commits",
            format!(
                "{here} has {ahead} {commits} that {what} ({}) does not{not_pushed}: the deploy will not have {}",
                short(&target),
                if ahead == 1 { "it" } else { "them" }
            ),
            fix,
        ));
    } else {
        out.push(Finding::warning(
            "ref-not-head",
            format!(
                "{what} ({}) is not {here}: the deploy runs code you have not run here",
                short(&target)
            ),
            format!(
                "git checkout {what} (git pull) to try what you deploy, or deploy --ref {}",
                branch.as_deref().unwrap_or(&short(&head))
            ),
        ));
    }
    out
}

/// Files not committed, but not deployctl's own (the state, the declarations: see own.rs).
fn uncommitted(tree: &Tree, workdir: &str, own: &OwnFiles) -> Vec<Finding> {
    let spec = if workdir.is_empty() { "." } else { workdir };
    let Some(status) = git(
        &tree.top,
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--",
            spec,
        ],
    ) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let mut entries = status.split('\0');
    while let Some(e) = entries.next() {
        if e.len() < 4 {
            continue;
        }
        let (code, path) = e.split_at(3);
        if own.contains(&tree.top.join(path)) {
            if code.starts_with('R') || code.starts_with('C') {
                entries.next();
            }
            continue;
        }
        let how = match code.trim() {
            "??" => "untracked",
            c if c.contains('D') => "deleted",
            c if c.starts_with('R') || c.starts_with('C') => {
                // Renames carry the source path as the next entry.
                entries.next();
                "renamed"
            }
            c if c.contains('A') => "added, not committed",
            _ => "modified",
        };
        files.push(format!("{path} ({how})"));
    }
    if files.is_empty() {
        return Vec::new();
    }
    let under = if workdir.is_empty() {
        "in the repository".to_string()
    } else {
        format!("under {workdir}/")
    };
    vec![Finding::warning(
        "uncommitted",
        format!(
            "{} {under} {} not committed, so the deploy will not have {}: {}",
            if files.len() == 1 {
                "1 file".to_string()
            } else {
                format!("{} files", files.len())
            },
            if files.len() == 1 { "is" } else { "are" },
            if files.len() == 1 { "it" } else { "them" },
            some_of(&files, 5)
        ),
        "commit them (git add, git commit) and push, or list them in .gitignore".into(),
    )]
}

/// An info when the ref is a branch (or the remote HEAD): each deploy takes whatever it
/// points to then.
pub(super) fn branch_ref(tree: Option<&Tree>, git_ref: Option<&str>) -> Option<Finding> {
    let fix = "tag the commit (git tag v1.0.0; git push --tags) and deploy --ref v1.0.0, or deploy a commit".to_string();
    let Some(r) = git_ref else {
        return Some(Finding::info(
            "branch-ref",
            "no ref is declared: each deploy takes the branch the remote HEAD names then".into(),
            fix,
        ));
    };
    let tree = tree?;
    let exists =
        |full: String| git(&tree.top, &["show-ref", "--verify", "--quiet", &full]).is_some();
    if exists(format!("refs/tags/{r}")) {
        return None;
    }
    let is_branch = match &tree.remote {
        Some(remote) => exists(format!("refs/remotes/{remote}/{r}")),
        None => exists(format!("refs/heads/{r}")),
    };
    is_branch.then(|| {
        Finding::info(
            "branch-ref",
            format!("{r} is a branch: each deploy takes whatever it points to then"),
            fix,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_repository() {
        assert_eq!(
            same_repo_key("https://GitHub.com/me/iris.git"),
            same_repo_key("git@github.com:me/iris")
        );
        assert_eq!(
            same_repo_key("ssh://git@github.com/me/iris.git/"),
            same_repo_key("https://github.com/me/iris")
        );
        assert_ne!(
            same_repo_key("https://github.com/me/iris"),
            same_repo_key("https://github.com/me/iri")
        );
        assert!(looks_like_commit("9f1c2e7"));
        assert!(!looks_like_commit("v1.0.0"));
        assert!(!looks_like_commit("main"));
    }
}
