//! `ref-not-found`: the declared ref is no branch, tag or commit of the repository, so the
//! deploy would fail at its first step (resolve). Told from the repository itself when it is
//! local; from the remote (`git ls-remote`, bounded) when this is a clone of it or the
//! repository is only a URL; from what was last fetched when the remote does not answer.
//! A commit id the remote does not advertise cannot be told apart from one it has: no
//! finding then (the agent says after its fetch).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::git::{git, looks_like_commit, Tree};
use super::{some_of, Finding};

/// How long the remote may take to list its refs.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

/// A finding when `git_ref` is known not to exist where the agent will look for it.
pub(super) fn missing(tree: Option<&Tree>, repo: &str, git_ref: Option<&str>) -> Option<Finding> {
    let r = git_ref?;
    match tree {
        Some(t) if t.remote.is_none() => in_local_repo(t, repo, r),
        Some(t) => in_clone(t, r),
        None => in_remote_only(repo, r),
    }
}

/// The deployed repository is this local one: what it has is what the agent sees.
fn in_local_repo(tree: &Tree, repo: &str, r: &str) -> Option<Finding> {
    let refs: Vec<String> = git(
        &tree.top,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )?
    .lines()
    .map(str::to_string)
    .collect();
    if names(&refs, r) || is_commit(&tree.top, r) {
        return None;
    }
    Some(Finding::warning(
        "ref-not-found",
        format!(
            "ref {r} does not exist in {repo}: it is no branch, tag or commit there ({}), so the deploy fails at its first step",
            known(&refs)
        ),
        fix(&refs, r, "git tag", None),
    ))
}

/// This directory is a clone of the deployed repository: ask its remote.
fn in_clone(tree: &Tree, r: &str) -> Option<Finding> {
    let remote = tree.remote.as_deref()?;
    let has = |full: String| git(&tree.top, &["show-ref", "--verify", "--quiet", &full]).is_some();
    if has(format!("refs/remotes/{remote}/{r}")) {
        return None;
    }
    let url = git(&tree.top, &["remote", "get-url", remote])
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| remote.to_string());
    let here = if has(format!("refs/tags/{r}")) {
        Some("a tag")
    } else if has(format!("refs/heads/{r}")) {
        Some("a branch")
    } else {
        None
    };
    let Some(refs) = ls_remote(&tree.top, remote) else {
        // Not asked: judged by the remote's branches as last fetched. A tag here may well
        // be there too, and a commit may be there unfetched.
        if here == Some("a tag") || (here.is_none() && looks_like_commit(r)) {
            return None;
        }
        let fix = match here {
            Some(_) => format!("git push {remote} {r}, then deploy"),
            None => format!("git fetch {remote} to see its refs, then deploy one that exists (--ref BRANCH or TAG)"),
        };
        return Some(Finding::warning(
            "ref-not-found",
            format!(
                "ref {r} is not a branch of {remote} ({url}) as last fetched here{}, and {remote} did not answer to tell: the deploy would fail at its first step",
                if here.is_some() { "" } else { ", nor a tag or commit of this clone" }
            ),
            fix,
        ));
    };
    // A commit the remote does not advertise may still be there.
    if names(&refs, r) || looks_like_commit(r) {
        return None;
    }
    Some(match here {
        Some(what) => Finding::warning(
            "ref-not-found",
            format!(
                "ref {r} is {what} here but does not exist on {remote} ({url}), where the agent fetches from: the deploy fails at its first step"
            ),
            format!("git push {remote} {r}, then deploy"),
        ),
        None => Finding::warning(
            "ref-not-found",
            format!(
                "ref {r} does not exist, neither here nor on {remote} ({url}): it is no branch or tag there ({}), so the deploy fails at its first step",
                known(&refs)
            ),
            fix(&refs, r, "git tag", Some(remote)),
        ),
    })
}

/// Only the URL is known here: ask it, and say something only when it answered.
fn in_remote_only(repo: &str, r: &str) -> Option<Finding> {
    if looks_like_commit(r) {
        return None;
    }
    let refs = ls_remote(&std::env::temp_dir(), repo)?;
    if names(&refs, r) {
        return None;
    }
    Some(Finding::warning(
        "ref-not-found",
        format!(
            "ref {r} does not exist in {repo}: it is no branch or tag there ({}), so the deploy fails at its first step",
            known(&refs)
        ),
        fix(&refs, r, "push a branch or tag", None),
    ))
}

/// Whether `refs` (full names) has `r` as the agent resolves it: a branch, a tag, or a full
/// ref name.
fn names(refs: &[String], r: &str) -> bool {
    r == "HEAD"
        || refs.iter().any(|full| {
            full == r || full == &format!("refs/heads/{r}") || full == &format!("refs/tags/{r}")
        })
}

fn is_commit(dir: &Path, r: &str) -> bool {
    looks_like_commit(r)
        && git(
            dir,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{r}^{{commit}}"),
            ],
        )
        .is_some()
}

/// The short names under `prefix`, newest version first for tags.
fn short(refs: &[String], prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = refs
        .iter()
        .filter_map(|f| f.strip_prefix(prefix))
        .map(str::to_string)
        .collect();
    out.sort_by_key(|n| std::cmp::Reverse(version_key(n)));
    out.dedup();
    out
}

/// `v1.10.0` after `v1.9.2`: the numbers in a name, compared as numbers.
fn version_key(name: &str) -> (Vec<u64>, String) {
    let numbers = name
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect();
    (numbers, name.to_string())
}

fn known(refs: &[String]) -> String {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            some_of(&v, 5)
        }
    };
    format!(
        "branches: {}; tags: {}",
        list(short(refs, "refs/heads/")),
        list(short(refs, "refs/tags/"))
    )
}

/// Deploy one that exists (the newest tag, else a branch), or create the ref.
fn fix(refs: &[String], r: &str, create: &str, remote: Option<&str>) -> String {
    let existing = short(refs, "refs/tags/")
        .into_iter()
        .next()
        .or_else(|| short(refs, "refs/heads/").into_iter().next());
    let make = match (create, remote) {
        ("git tag", Some(remote)) => format!("git tag {r} && git push {remote} {r}"),
        ("git tag", None) => format!("git tag {r} COMMIT"),
        (other, _) => other.to_string(),
    };
    match existing {
        Some(e) => format!("deploy a ref that exists (--ref {e}), or create it ({make})"),
        None => format!("create it ({make}), then deploy"),
    }
}

/// The refs (full names, tags peeled to one) `git ls-remote` lists for `remote` (a remote's
/// name in `dir`'s repository, or a URL), or `None` when it failed or took too long.
fn ls_remote(dir: &Path, remote: &str) -> Option<Vec<String>> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(["ls-remote", "--heads", "--tags", "--", remote])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        // Never a password or host-key question on a terminal nobody watches.
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let deadline = Instant::now() + LS_REMOTE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader ends when whatever git started lets go of the pipe.
                return None;
            }
        }
    };
    let out = reader.join().ok()?;
    status.success().then(|| {
        out.lines()
            .filter_map(|l| l.split('\t').nth(1))
            .map(|n| n.trim_end_matches("^{}").to_string())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_suggestions() {
        let refs: Vec<String> = ["refs/heads/main", "refs/tags/v1.9.2", "refs/tags/v1.10.0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(names(&refs, "main"));
        assert!(names(&refs, "v1.10.0"));
        assert!(names(&refs, "refs/heads/main"));
        assert!(!names(&refs, "v9.9.9"));
        assert_eq!(short(&refs, "refs/tags/"), vec!["v1.10.0", "v1.9.2"]);
        assert_eq!(
            fix(&refs, "v9.9.9", "git tag", Some("origin")),
            "deploy a ref that exists (--ref v1.10.0), or create it (git tag v9.9.9 && git push origin v9.9.9)"
        );
        assert_eq!(known(&refs), "branches: main; tags: v1.10.0, v1.9.2");
    }
}
