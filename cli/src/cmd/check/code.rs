//! A best-effort read of the app's Python files: the modules they import, and the data
//! files they open by a relative path (string literals ending in a data extension).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use super::git::{git, Tree};
use super::{some_of, Finding};

/// Files larger than this are not read (generated code, vendored data).
const MAX_FILE: u64 = 1 << 20;
/// At most this many Python files are read.
const MAX_FILES: usize = 2000;

/// Extensions of files a model or dashboard loads at run time.
const DATA_EXTENSIONS: &[&str] = &[
    "csv",
    "tsv",
    "parquet",
    "feather",
    "arrow",
    "pkl",
    "pickle",
    "joblib",
    "pt",
    "pth",
    "ckpt",
    "safetensors",
    "onnx",
    "h5",
    "hdf5",
    "keras",
    "npy",
    "npz",
    "json",
    "jsonl",
    "xlsx",
    "xls",
    "db",
    "sqlite",
    "sqlite3",
    "bin",
    "model",
    "txt",
    "yaml",
    "yml",
    "gz",
    "zip",
];

static DATA_LITERAL: LazyLock<Regex> = LazyLock::new(|| {
    let exts = DATA_EXTENSIONS.join("|");
    Regex::new(&format!(r#"["']([^"'\s{{}}%<>|*?]+\.(?:{exts}))["']"#))
        .unwrap_or_else(|e| unreachable!("the data-literal pattern is valid: {e}"))
});

static IMPORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:from\s+([A-Za-z_]\w*)[\w.]*\s+import\b|import\s+([^#;]+))")
        .unwrap_or_else(|e| unreachable!("the import pattern is valid: {e}"))
});

/// A Python file of the app, relative to the top of the tree.
pub(super) struct PyFile {
    pub rel: PathBuf,
    pub text: String,
}

/// The Python files under the workdir that git has or would take (tracked, and untracked
/// but not ignored), without virtual environments.
pub(super) fn python_files(tree: &Tree, workdir: &str) -> Vec<PyFile> {
    let spec = if workdir.is_empty() { "." } else { workdir };
    let Some(list) = git(
        &tree.top,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            spec,
        ],
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let top = std::fs::canonicalize(&tree.top).unwrap_or_else(|_| tree.top.clone());
    for rel in list.split('\0').filter(|p| p.ends_with(".py")) {
        if rel.contains("site-packages/")
            || rel
                .split('/')
                .any(|c| c == ".venv" || c == "venv" || c == "node_modules")
        {
            continue;
        }
        let path = tree.top.join(rel);
        // Never a file a link leads to outside the repository.
        if !std::fs::canonicalize(&path).is_ok_and(|p| p.starts_with(&top)) {
            continue;
        }
        if std::fs::metadata(&path)
            .map(|m| m.len() > MAX_FILE)
            .unwrap_or(true)
        {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.push(PyFile {
                rel: PathBuf::from(rel),
                text,
            });
        }
        if out.len() >= MAX_FILES {
            break;
        }
    }
    out
}

/// The top-level modules the files import, each with the first file that does, without
/// the app's own modules (a `name.py` or `name/` beside the file, in the workdir or at
/// the top) and relative imports.
pub(super) fn imports(tree: &Tree, workdir: &str, files: &[PyFile]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let roots = [tree.top.join(workdir), tree.top.clone()];
    for f in files {
        let dir = tree.top.join(f.rel.parent().unwrap_or(Path::new("")));
        for line in f.text.lines() {
            let Some(c) = IMPORT.captures(line) else {
                continue;
            };
            let mut names = Vec::new();
            if let Some(m) = c.get(1) {
                names.push(m.as_str().to_string());
            } else if let Some(m) = c.get(2) {
                for part in m.as_str().split(',') {
                    let module = part.split_whitespace().next().unwrap_or("");
                    let top = module.split('.').next().unwrap_or("");
                    if !top.is_empty() && top.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        names.push(top.to_string());
                    }
                }
            }
            for name in names {
                let own = [&dir, &roots[0], &roots[1]]
                    .iter()
                    .any(|d| d.join(format!("{name}.py")).is_file() || d.join(&name).is_dir());
                if !own {
                    out.entry(name).or_insert_with(|| f.rel.clone());
                }
            }
        }
    }
    out
}

/// Data files the code names by a relative path that exist here but that git does not
/// track: the app finds them on this machine and not deployed.
/// Files under `artifacts` (relative to the repository's top) come with the deploy.
pub(super) fn untracked_data(
    tree: &Tree,
    workdir: &str,
    files: &[PyFile],
    artifacts: &[PathBuf],
) -> Vec<Finding> {
    let tracked: BTreeSet<PathBuf> = git(&tree.top, &["ls-files", "-z"])
        .unwrap_or_default()
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    let mut missing: BTreeMap<PathBuf, String> = BTreeMap::new();
    for f in files {
        let file_dir = f.rel.parent().unwrap_or(Path::new("")).to_path_buf();
        for (n, line) in f.text.lines().enumerate() {
            for c in DATA_LITERAL.captures_iter(line) {
                let lit = &c[1];
                if lit.starts_with('/') || lit.starts_with('~') || lit.contains("://") {
                    continue;
                }
                // Relative to the workdir (where the app runs), else to the file.
                let candidates = [Path::new(workdir).join(lit), file_dir.join(lit)];
                let Some(rel) = candidates
                    .iter()
                    .map(|c| crate::decl::normalize(c))
                    .find(|c| tree.top.join(c).is_file())
                else {
                    continue;
                };
                if !tracked.contains(&rel) && !artifacts.iter().any(|a| rel.starts_with(a)) {
                    missing
                        .entry(rel)
                        .or_insert_with(|| format!("{}:{}", f.rel.display(), n + 1));
                }
            }
        }
    }
    missing
        .into_iter()
        .map(|(rel, at)| {
            let ignored = git(&tree.top, &["check-ignore", "-q", &rel.to_string_lossy()]).is_some();
            let why = if ignored { "ignored by .gitignore" } else { "untracked" };
            Finding::warning(
                "untracked-data",
                format!(
                    "{at} opens {} which is here but not in git ({why}): the deployed app will not find it",
                    rel.display()
                ),
                format!(
                    "commit it (git add{} {}; git lfs for large files), or fetch it in --start-script",
                    if ignored { " -f" } else { "" },
                    rel.display()
                ),
            )
        })
        .collect()
}

/// Names of modules, for messages.
pub(super) fn list(names: &[String]) -> String {
    some_of(names, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines() {
        let caps = |l: &str| {
            IMPORT.captures(l).map(|c| {
                c.get(1)
                    .or_else(|| c.get(2))
                    .map(|m| m.as_str().trim().to_string())
                    .unwrap_or_default()
            })
        };
        assert_eq!(
            caps("from sklearn.linear_model import X").as_deref(),
            Some("sklearn")
        );
        assert_eq!(
            caps("    import numpy as np, pandas").as_deref(),
            Some("numpy as np, pandas")
        );
        assert_eq!(caps("from . import x"), None);
        assert_eq!(caps("# import os"), None);
    }

    #[test]
    fn data_literals() {
        let found: Vec<String> = DATA_LITERAL
            .captures_iter(
                r#"pd.read_csv("data/iris.csv"); open('model.pkl'); f"{x}.csv"; "a b.csv""#,
            )
            .map(|c| c[1].to_string())
            .collect();
        assert_eq!(found, vec!["data/iris.csv", "model.pkl"]);
        assert_eq!(
            crate::decl::normalize(Path::new("./a/../b/c.csv")),
            PathBuf::from("b/c.csv")
        );
    }
}
