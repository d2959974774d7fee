//! The data directory's layout: where records, releases, logs, venvs and git mirrors live.
//!
//! ```text
//! <data>/deployments/<name>/deployment.json   the record (spec, releases, current pid)
//! <data>/deployments/<name>/releases/<n>/     checkout of release n
//! <data>/deployments/<name>/logs/app.log      the app's stdout and stderr
//! <data>/deployments/<name>/logs/deploy.log   the deploy steps' output
//! <data>/deployments/<name>/data/             DATA_DIR: the app's own, across releases
//! <data>/deployments/<name>/tmp/              the app's private /tmp
//! <data>/envs/<key>/                          Python venvs, by content hash
//! <data>/artifacts/sha256/<hex>               model and data files, by content hash
//! <data>/artifacts/unpacked/<hex>/            archives unpacked, by the archive's hash
//! <data>/git/<hash>.git                       bare mirrors, one per repository URL
//! ```

use std::path::PathBuf;

/// Paths inside the data directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    pub(crate) fn deployments(&self) -> PathBuf {
        self.root.join("deployments")
    }
    pub(crate) fn deployment(&self, name: &str) -> PathBuf {
        self.deployments().join(name)
    }
    pub(crate) fn record(&self, name: &str) -> PathBuf {
        self.deployment(name).join("deployment.json")
    }
    pub(crate) fn release(&self, name: &str, number: u32) -> PathBuf {
        self.deployment(name)
            .join("releases")
            .join(number.to_string())
    }
    pub(crate) fn logs(&self, name: &str) -> PathBuf {
        self.deployment(name).join("logs")
    }
    pub(crate) fn app_log(&self, name: &str) -> PathBuf {
        self.logs(name).join("app.log")
    }
    pub(crate) fn deploy_log(&self, name: &str) -> PathBuf {
        self.logs(name).join("deploy.log")
    }
    /// The deployment's own directory (`DATA_DIR`, its user's home): kept across releases.
    pub(crate) fn data(&self, name: &str) -> PathBuf {
        self.deployment(name).join("data")
    }
    /// What its processes see as `/tmp`.
    pub(crate) fn tmp(&self, name: &str) -> PathBuf {
        self.deployment(name).join("tmp")
    }
    pub(crate) fn venvs(&self) -> PathBuf {
        self.root.join("envs")
    }
    pub(crate) fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
    pub(crate) fn git(&self) -> PathBuf {
        self.root.join("git")
    }
}
