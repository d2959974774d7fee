//! Packages: imported and installed here but not declared (the deployed environment has
//! only what is declared), and declared without a version (a new upstream release
//! changes what runs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::code::{self, PyFile};
use super::git::Tree;
use super::Finding;

/// A requirement as declared: its line, and the distribution name it installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Requirement {
    pub line: String,
    pub name: Option<String>,
}

/// The requirements of a requirements file (and of the files it includes with `-r`),
/// never reading a file outside the repository `top` (a link out: the agent refuses it,
/// and what it points to is not ours to print); such files are returned apart.
pub(super) fn read_requirements(path: &Path, top: &Path) -> (Vec<Requirement>, Vec<PathBuf>) {
    let mut out = Vec::new();
    let mut outside = Vec::new();
    let top = std::fs::canonicalize(top).unwrap_or_else(|_| top.to_path_buf());
    read_into(path, &top, &mut out, &mut outside, 0);
    (out, outside)
}

fn read_into(
    path: &Path,
    top: &Path,
    out: &mut Vec<Requirement>,
    outside: &mut Vec<PathBuf>,
    depth: u32,
) {
    let Ok(real) = std::fs::canonicalize(path) else {
        return;
    };
    if !real.starts_with(top) {
        outside.push(path.to_path_buf());
        return;
    }
    let Ok(text) = std::fs::read_to_string(&real) else {
        return;
    };
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let include = line
            .strip_prefix("-r ")
            .or_else(|| line.strip_prefix("--requirement "))
            .or_else(|| line.strip_prefix("--requirement="));
        if let Some(inc) = include {
            if depth < 5 {
                let base = path.parent().unwrap_or(Path::new("."));
                read_into(&base.join(inc.trim()), top, out, outside, depth + 1);
            }
            continue;
        }
        if line.starts_with('-') && !line.starts_with("-e") {
            continue; // --index-url and other options
        }
        out.push(requirement(line));
    }
}

/// The distribution a pip argument or requirement line installs, when it names one.
pub(super) fn requirement(line: &str) -> Requirement {
    let l = line.trim().trim_start_matches("-e").trim();
    let name = if let Some((_, egg)) = l.split_once("#egg=") {
        Some(egg.split(['&', '[']).next().unwrap_or("").to_string())
    } else if l.contains("://") && !l.contains(" @ ") || l.starts_with('.') || l.starts_with('/') {
        None
    } else {
        let n: String = l
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        (!n.is_empty()).then_some(n)
    };
    Requirement {
        line: line.trim().to_string(),
        name: name.filter(|n| !n.is_empty()).map(|n| canonical(&n)),
    }
}

/// PEP 503: lower-case, runs of `-_.` as one `-`.
pub(super) fn canonical(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Whether a requirement pins one version: `==`/`===`, or a direct reference (URL, path,
/// a git commit).
fn pinned(r: &Requirement) -> bool {
    r.line.contains("==") || r.name.is_none() || r.line.contains(" @ ") || r.line.contains("://")
}

/// One warning naming every requirement without a pin.
pub(super) fn unpinned(pip: &[String], requirements: &[Requirement]) -> Vec<Finding> {
    let loose: Vec<String> = pip
        .iter()
        .map(|p| requirement(p))
        .chain(requirements.iter().cloned())
        .filter(|r| !pinned(r))
        .map(|r| r.line)
        .collect();
    if loose.is_empty() {
        return Vec::new();
    }
    vec![Finding::warning(
        "unpinned-packages",
        format!(
            "declared without a version: {}; a new upstream release will change what a later deploy runs",
            code::list(&loose)
        ),
        "pin them (name==version, `pip freeze` shows yours), or deploy with --locked to keep the last good deploy's versions".into(),
    )]
}

/// What the local Python says about the imported modules.
#[derive(Debug, Deserialize)]
struct Answer {
    /// Modules that belong to an installed distribution not covered by the declaration.
    undeclared: Vec<Undeclared>,
}

#[derive(Debug, Deserialize)]
struct Undeclared {
    module: String,
    dist: String,
    version: String,
}

/// Asks the local Python which installed distribution each imported module comes from,
/// leaving out the standard library and what the declared packages pull in.
const PROBE: &str = r#"
import json, re, sys
import importlib.metadata as md
q = json.load(sys.stdin)
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
covered, todo = set(), [canon(n) for n in q["declared"]]
while todo:
    n = todo.pop()
    if n in covered:
        continue
    covered.add(n)
    try:
        reqs = md.requires(n) or []
    except Exception:
        continue
    for r in reqs:
        if "extra ==" in r or "extra==" in r:
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
        if m:
            todo.append(canon(m.group(1)))
stdlib = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
owners = md.packages_distributions()
out = []
for mod in q["modules"]:
    if mod in stdlib or mod not in owners:
        continue
    dists = owners[mod]
    if any(canon(d) in covered for d in dists):
        continue
    d = dists[0]
    try:
        v = md.version(d)
    except Exception:
        v = ""
    out.append({"module": mod, "dist": d, "version": v})
json.dump({"undeclared": out}, sys.stdout)
"#;

/// The local Python: the active virtual environment's, else `python3` on PATH.
fn local_python() -> Option<PathBuf> {
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let p = PathBuf::from(venv).join("bin/python");
        if p.is_file() {
            return Some(p);
        }
    }
    ["python3", "python"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    })
}

/// Imports whose distribution is installed here but that neither `pip` nor the
/// requirements declare (nor pull in).
pub(super) fn undeclared(
    tree: &Tree,
    workdir: &str,
    files: &[PyFile],
    pip: &[String],
    requirements: &[Requirement],
) -> Vec<Finding> {
    let imports = code::imports(tree, workdir, files);
    if imports.is_empty() {
        return Vec::new();
    }
    let Some(python) = local_python() else {
        return vec![Finding::info(
            "not-checked",
            "imports were not checked: no local Python (python3 on PATH or $VIRTUAL_ENV)".into(),
            "activate the environment you run the app in, then check again".into(),
        )];
    };
    let declared: Vec<String> = pip
        .iter()
        .map(|p| requirement(p))
        .chain(requirements.iter().cloned())
        .filter_map(|r| r.name)
        .collect();
    let query = serde_json::json!({
        "modules": imports.keys().collect::<Vec<_>>(),
        "declared": declared,
    });
    let answer = match ask(&python, &query.to_string()) {
        Ok(a) => a,
        Err(why) => {
            return vec![Finding::info(
                "not-checked",
                format!("imports were not checked: {} {why}", python.display()),
                "check that this Python runs (3.10 or newer has packages_distributions)".into(),
            )]
        }
    };
    let mut by_dist: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for u in answer.undeclared {
        let at = imports
            .get(&u.module)
            .map(|p| format!("{} imports {}", p.display(), u.module))
            .unwrap_or_else(|| u.module.clone());
        by_dist
            .entry(u.dist)
            .or_insert((u.version, Vec::new()))
            .1
            .push(at);
    }
    by_dist
        .into_iter()
        .map(|(dist, (version, at))| {
            let pin = if version.is_empty() {
                dist.clone()
            } else {
                format!("{dist}=={version}")
            };
            Finding::warning(
                "undeclared-package",
                format!(
                    "{} — {dist} {version} is installed here ({}) but not declared, so the deployed environment will not have it",
                    code::list(&at),
                    python.display()
                ),
                format!("declare it: --pip {pin} (or add {pin} to the requirements file)"),
            )
        })
        .collect()
}

fn ask(python: &Path, query: &str) -> Result<Answer, String> {
    let mut child = Command::new(python)
        .args(["-c", PROBE])
        // Not the repository: its own modules are no installed distribution.
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("does not start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(query.as_bytes())
            .map_err(|e| format!("did not take the question: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("did not answer: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "failed: {}",
            err.lines().last().unwrap_or("no output")
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("gave an unreadable answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_names_and_pins() {
        let r = requirement("Scikit_Learn[all]>=1.5 ; python_version > '3'");
        assert_eq!(r.name.as_deref(), Some("scikit-learn"));
        assert!(!pinned(&r));
        assert!(pinned(&requirement("numpy==2.1.0")));
        assert!(pinned(&requirement("git+https://x.org/a.git@abc#egg=foo")));
        assert_eq!(
            requirement("git+https://x.org/a.git@abc#egg=foo")
                .name
                .as_deref(),
            Some("foo")
        );
        assert!(pinned(&requirement("./vendor/pkg")));
        assert!(pinned(&requirement("foo @ https://x.org/foo-1.0.tar.gz")));
        assert_eq!(canonical("Foo.Bar__baz"), "foo-bar-baz");
        let f = unpinned(&["six".into(), "numpy==2.1.0".into()], &[]);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("six") && !f[0].message.contains("numpy"));
    }
}
