//! Repository paths must stay in the repository. A checkout is the repository author's
//! content, and a symlink in it can point anywhere on the node: `req.txt -> /root/secret`
//! would have the installer print the secret's first line in its error, `run.sh ->
//! /usr/local/bin/x` would run a program outside the release. Every path the agent opens or
//! runs on the repository's word (workdir, start script, requirements file and the files it
//! includes with `-r`/`-c`) is resolved, symlinks followed, and refused unless it resolves
//! beneath the checkout. Symlinks that stay inside the checkout are fine.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A path that leaves the checkout, or cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It resolves outside the checkout: the path as written, and where it points.
    Outside { path: PathBuf, points_to: PathBuf },
    /// It does not exist (or a link in it is broken).
    Missing { path: PathBuf },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Outside { path, points_to } => write!(
                f,
                "{} points outside the repository's checkout (to {}); the agent only reads and runs files of the repository",
                path.display(),
                points_to.display()
            ),
            Refusal::Missing { path } => write!(f, "{} does not exist", path.display()),
        }
    }
}

/// `path` (relative to `base`, or absolute) with every symlink resolved, when it lies
/// beneath `root` (itself resolved). Blocking: a few `stat`s.
pub(crate) fn resolve(root: &Path, base: &Path, path: &Path) -> Result<PathBuf, Refusal> {
    let shown = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let joined = base.join(path);
    let root = root.canonicalize().map_err(|_| Refusal::Missing {
        path: root.to_path_buf(),
    })?;
    let real = joined.canonicalize().map_err(|_| Refusal::Missing {
        path: shown(&joined),
    })?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(Refusal::Outside {
            path: shown(&joined),
            points_to: real,
        })
    }
}

/// Checks a requirements file and, recursively, every file it includes (`-r`, `-c`, in
/// their long and joined forms), relative to the including file as pip reads them; also
/// local paths it installs (`-e ./pkg`, `./pkg`). Returns the first refusal. Blocking.
pub(crate) fn check_requirements(root: &Path, file: &Path) -> Result<(), Refusal> {
    let mut seen = HashSet::new();
    let mut todo = vec![file.to_path_buf()];
    while let Some(next) = todo.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        let text = std::fs::read_to_string(&next).map_err(|_| Refusal::Missing {
            path: next.strip_prefix(root).unwrap_or(&next).to_path_buf(),
        })?;
        let dir = next.parent().unwrap_or(root).to_path_buf();
        for reference in references(&text) {
            match reference {
                Reference::Include(p) => todo.push(resolve(root, &dir, Path::new(p))?),
                Reference::Local(p) => {
                    resolve(root, &dir, Path::new(p))?;
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Reference<'a> {
    /// Another requirements or constraints file (`-r`, `-c`): read by the installer.
    Include(&'a str),
    /// A local directory or archive installed from the checkout (`-e ./pkg`, `./pkg`).
    Local(&'a str),
}

/// The files a requirements text refers to.
fn references(text: &str) -> Vec<Reference<'_>> {
    let mut out = Vec::new();
    for line in text.lines() {
        // Comments start at " #" or at the line's start.
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let include = ["--requirement", "--constraint", "-r", "-c"]
            .iter()
            .find_map(|flag| line.strip_prefix(flag).map(|rest| (flag.len() > 2, rest)));
        if let Some((long, rest)) = include {
            let rest = if long {
                rest.strip_prefix('=').unwrap_or(rest)
            } else {
                rest
            };
            let p = rest.trim();
            // `-rfoo.txt` and `-r foo.txt`; `--requirements-x` is another option.
            if !p.is_empty() && (long || !rest.starts_with('-')) {
                out.push(Reference::Include(p));
            }
            continue;
        }
        let target = line
            .strip_prefix("--editable")
            .or_else(|| line.strip_prefix("-e"))
            .map(|r| r.trim_start_matches('=').trim())
            .unwrap_or(line);
        let target = target.strip_prefix("file:").unwrap_or(target);
        if target.starts_with("./") || target.starts_with("../") || target == "." {
            out.push(Reference::Local(
                target.split_whitespace().next().unwrap_or(target),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_local_paths_are_found_in_every_spelling() {
        let text = "# a comment\nsix==1.16\n-r base.txt\n-rdev.txt\n--requirement=more.txt\n\
                    --constraint c.txt\n-c  pins.txt # why\n-e ./pkg\n./other\nfile:../up\n\
                    --index-url https://x\nrequests @ https://example.org/r.whl\n";
        assert_eq!(
            references(text),
            vec![
                Reference::Include("base.txt"),
                Reference::Include("dev.txt"),
                Reference::Include("more.txt"),
                Reference::Include("c.txt"),
                Reference::Include("pins.txt"),
                Reference::Local("./pkg"),
                Reference::Local("./other"),
                Reference::Local("../up"),
            ]
        );
    }

    #[test]
    fn links_inside_pass_and_links_outside_are_refused() {
        let tmp = tempfile_dir();
        let root = tmp.join("checkout");
        let outside = tmp.join("secret.txt");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(&outside, "topsecret\n").unwrap();
        std::fs::write(root.join("real.txt"), "six\n").unwrap();
        std::os::unix::fs::symlink("real.txt", root.join("inside.txt")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("req.txt")).unwrap();
        std::fs::write(root.join("sub/top.txt"), "-r ../req.txt\n").unwrap();
        std::fs::write(root.join("abs.txt"), format!("-r {}\n", outside.display())).unwrap();

        assert!(resolve(&root, &root, Path::new("inside.txt")).is_ok());
        assert!(check_requirements(&root, &root.join("inside.txt")).is_ok());
        let refused = resolve(&root, &root, Path::new("req.txt")).unwrap_err();
        assert!(matches!(&refused, Refusal::Outside { path, .. } if path == Path::new("req.txt")));
        assert!(refused.to_string().contains("secret.txt"), "{refused}");
        assert!(matches!(
            check_requirements(&root, &root.join("sub/top.txt")),
            Err(Refusal::Outside { .. })
        ));
        assert!(matches!(
            check_requirements(&root, &root.join("abs.txt")),
            Err(Refusal::Outside { .. })
        ));
        assert!(matches!(
            resolve(&root, &root, Path::new("../secret.txt")),
            Err(Refusal::Outside { .. })
        ));
        assert!(matches!(
            resolve(&root, &root, Path::new("nope.txt")),
            Err(Refusal::Missing { .. })
        ));
        let _ = std::fs::remove_dir_all(&tmp);
    }

    fn tempfile_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "beneath-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
