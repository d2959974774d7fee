//! deployctl's own files in a working tree, which `uncommitted` does not name: the deploy
//! does not need them, so leaving them out of git cannot make it miss anything.
//!
//! - The state (`.deployctl/`: `state.json`, `state.lock`, or wherever `core.state.uri`
//!   puts a file) is the tool's: it changes with every deploy, and committing it would only
//!   make every deploy leave the checkout dirty. It is never a finding.
//! - The declarations (`NAME.deploy.yaml`, `NAME.env.yaml`) and the project's
//!   `.deployctl.yaml` are the project's: `deployctl` reads them here and sends what they say
//!   to the agent, which deploys the repository's commits and never reads them from git.
//!   Keeping them in git is good practice (README: "keep it in git") but the user's choice,
//!   and many keep them in another repository than the app's, so an uncommitted one is not
//!   a reason the deploy would fail: no finding either.

use std::path::{Path, PathBuf};

use crate::project::{Project, CONFIG_FILE};

/// Where the project's and the tool's files are, as absolute paths.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnFiles {
    /// The project root (declarations and `.deployctl.yaml` are directly in it).
    root: PathBuf,
    /// The state file and its lock, when the state is a file.
    state: Vec<PathBuf>,
}

impl OwnFiles {
    pub(crate) fn of(project: &Project) -> OwnFiles {
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let root = real(&project.root);
        let uri = project.state_uri();
        let mut state = Vec::new();
        if !uri.contains("://") || uri.starts_with("file://") {
            let path = root.join(uri.trim_start_matches("file://"));
            // The file may not exist yet: its directory does once a deploy wrote it.
            let path = match (path.parent(), path.file_name()) {
                (Some(dir), Some(name)) => real(dir).join(name),
                _ => path,
            };
            state.push(path.with_extension("lock"));
            state.push(path);
        }
        OwnFiles { root, state }
    }

    /// Whether `path` (absolute, in a working tree) is one of the tool's or the project's
    /// own files.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        if self.root.as_os_str().is_empty() {
            return false;
        }
        if path.starts_with(self.root.join(".deployctl")) || self.state.iter().any(|s| s == path) {
            return true;
        }
        if path.parent() != Some(self.root.as_path()) {
            return false;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        if name == CONFIG_FILE {
            return true;
        }
        let declared = [".deploy.yaml", ".env.yaml"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .any(|n| crate::decl::validate_name("NAME", n).is_ok());
        // A file of the app's that happens to end so is the app's: a declaration says
        // what object it is.
        declared
            && std::fs::read_to_string(path)
                .map(|text| text.lines().any(|l| l.starts_with("object_type:")))
                .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_declarations_are_own_app_files_are_not() {
        let dir = std::env::temp_dir().join(format!("deployctl-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = std::fs::canonicalize(&dir).unwrap();
        std::fs::write(
            root.join("iris.deploy.yaml"),
            "object_type: deployment\ntype: process\n",
        )
        .unwrap();
        std::fs::write(root.join("app.env.yaml"), "DEBUG: 1\n").unwrap();
        let own = OwnFiles {
            root: root.clone(),
            state: vec![root.join("st/s.json"), root.join("st/s.lock")],
        };
        assert!(own.contains(&root.join(".deployctl/state.lock")));
        assert!(own.contains(&root.join(".deployctl/state.json")));
        assert!(own.contains(&root.join("st/s.lock")));
        assert!(own.contains(&root.join(".deployctl.yaml")));
        assert!(own.contains(&root.join("iris.deploy.yaml")));
        assert!(
            !own.contains(&root.join("app.env.yaml")),
            "not a declaration"
        );
        assert!(!own.contains(&root.join("app.py")));
        assert!(!own.contains(&root.join("sub/iris.deploy.yaml")));
        assert!(!OwnFiles::default().contains(&root.join(".deployctl/state.lock")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
