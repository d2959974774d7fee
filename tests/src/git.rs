//! Git repositories made with the git CLI, independent of the machine's git configuration.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::app_py;

/// A git repository in a temporary directory, driven with the git CLI and a configuration
/// that does not depend on the machine (no system or global config, fixed identity).
pub struct GitRepo {
    tmp: TempDir,
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepo {
    /// `git init -b main` in a new temporary directory.
    pub fn new() -> GitRepo {
        let tmp = tempfile::Builder::new()
            .prefix("deployctl-e2e-repo-")
            .tempdir()
            .expect("creating a temporary directory for a git repository");
        let repo = GitRepo { tmp };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The repository as `deployctl run --repo` takes it: an absolute path.
    pub fn url(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// The repository as a `file://` URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Runs git in the repository; panics with its output when it fails. Returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "tag.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "deployctl e2e")
            .env("GIT_AUTHOR_EMAIL", "e2e@example.invalid")
            .env("GIT_COMMITTER_NAME", "deployctl e2e")
            .env("GIT_COMMITTER_EMAIL", "e2e@example.invalid")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run git (is it installed?): {e}"));
        assert!(
            out.status.success(),
            "git {args:?} failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file (creating directories).
    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let path = self.path().join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self
    }

    /// Writes an executable file (mode 755, which git records).
    pub fn write_executable(&self, rel: &str, content: &str) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        self.write(rel, content);
        let path = self.path().join(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// Copies a directory tree into the repository (at its root when `rel` is "").
    pub fn copy_dir(&self, from: &Path, rel: &str) -> &Self {
        copy_tree(from, &self.path().join(rel));
        self
    }

    /// `git add -A && git commit`: returns the full commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    /// The full id of HEAD.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// An annotated tag at HEAD.
    pub fn tag(&self, name: &str) {
        self.git(&["tag", "-a", name, "-m", name]);
    }

    /// Commits `app.py` with the standard app and `marker`, tags it when `tag` is given, and
    /// returns the commit.
    pub fn commit_app(&self, marker: &str, tag: Option<&str>) -> String {
        self.write("app.py", &app_py(marker));
        let commit = self.commit(&format!("app {marker}"));
        if let Some(t) = tag {
            self.tag(t);
        }
        commit
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display())) {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" || name == ".venv" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}
