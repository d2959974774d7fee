//! The artifacts: one without a sha256 (deployed only with `run --allow-unpinned`: each
//! deploy downloads it again and nothing proves every node got the same file), and one
//! whose path the repository already has (the deploy refuses to replace a file of the
//! checkout).

use std::path::Path;

use super::git::{git, Tree};
use super::Finding;
use crate::decl::DeploymentDecl;

pub(super) fn findings(d: &DeploymentDecl, tree: Option<&Tree>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, a) in d.artifacts.iter().enumerate() {
        if a.unpinned() {
            out.push(Finding::warning(
                "unpinned-artifact",
                format!(
                    "artifacts[{i}] {} ({}) has no sha256: `run` refuses it without --allow-unpinned; with it, every deploy downloads it again and nothing proves each node got the same file",
                    a.path,
                    a.shown_url()
                ),
                format!(
                    "pin it: sha256sum the file and set artifacts[{i}].sha256 (or --artifact {}={}#sha256=HEX)",
                    a.path,
                    a.url
                ),
            ));
        }
    }
    let Some(tree) = tree else {
        return out;
    };
    let workdir = Path::new(d.workdir.as_deref().unwrap_or(""));
    for (i, a) in d.artifacts.iter().enumerate() {
        let rel = crate::decl::normalize(&workdir.join(a.path.trim()));
        let rel = rel.to_string_lossy();
        let tracked = git(&tree.top, &["ls-files", "--", &rel]).unwrap_or_default();
        if !tracked.trim().is_empty() {
            out.push(Finding::warning(
                "artifact-in-repository",
                format!(
                    "artifacts[{i}].path {} is in the repository ({rel}): the deploy refuses to put the artifact over a file of the checkout",
                    a.path
                ),
                format!("take it out of git (git rm --cached -r {rel}; add it to .gitignore), or give the artifact another path"),
            ));
        }
    }
    out
}

/// Where the artifacts land, relative to the repository's top: data files the code opens
/// there come from them, not from git.
pub(super) fn paths(d: &DeploymentDecl) -> Vec<std::path::PathBuf> {
    let workdir = Path::new(d.workdir.as_deref().unwrap_or(""));
    d.artifacts
        .iter()
        .map(|a| crate::decl::normalize(&workdir.join(a.path.trim())))
        .collect()
}
