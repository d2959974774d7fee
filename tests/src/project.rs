//! A temporary project directory and the real `deployctl` binary run in it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::{deployctl_bin, wait_until, Agent, COMMAND_TIMEOUT};

/// What a `deployctl` command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub args: Vec<String>,
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for searching messages.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics, showing the output, unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit code {code}\n{self}");
        self
    }

    /// Panics, showing the output, unless it exited 0.
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// Panics unless it failed and `agent` kept no record of `name`: a deploy refused
    /// before anything ran.
    pub fn refused_before_anything_ran(&self, agent: &Agent, name: &str) -> &Self {
        assert_ne!(self.code, 0, "expected a refusal\n{self}");
        assert!(
            agent.record(name).is_none(),
            "a refused deploy left a record of {name}\n{self}"
        );
        self
    }

    /// Panics unless stdout+stderr contain `needle` (case-insensitive).
    pub fn mentions(&self, needle: &str) -> &Self {
        assert!(
            self.all().to_lowercase().contains(&needle.to_lowercase()),
            "expected the output to mention {needle:?}\n{self}"
        );
        self
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ deployctl {}\n--- exit code: {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// A temporary project directory for `deployctl --project`.
pub struct Project {
    tmp: TempDir,
    /// Variables every `deployctl` of this project gets (e.g. an S3 state's credentials).
    env: std::sync::Mutex<Vec<(String, String)>>,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    pub fn new() -> Project {
        let tmp = tempfile::Builder::new()
            .prefix("deployctl-e2e-project-")
            .tempdir()
            .expect("creating a temporary project directory");
        Project {
            tmp,
            env: Default::default(),
        }
    }

    /// Every later `deployctl` of this project gets `vars` (as a user's shell would).
    pub fn set_env(&self, vars: &[(&str, String)]) {
        let mut env = self.env.lock().unwrap_or_else(|p| p.into_inner());
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    }

    /// A project with env `name` declared for `agent` and made the default env in
    /// `.deployctl.yaml`, so that no command can fall back to the built-in `local` env.
    pub fn for_agent(name: &str, agent: &Agent) -> Project {
        Project::for_agents(name, &[agent])
    }

    /// A project whose default env `name` is these agents, in this order.
    pub fn for_agents(name: &str, agents: &[&Agent]) -> Project {
        let p = Project::new();
        p.declare_env_of(name, agents);
        p.write(
            ".deployctl.yaml",
            &format!("core:\n  default_env: {name}\n"),
        );
        p
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes a file in the project directory.
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path().join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Reads a file of the project directory.
    pub fn read(&self, rel: &str) -> String {
        let path = self.path().join(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// `deployctl --project DIR ARGS...` with the default timeout.
    pub fn deployctl(&self, args: &[&str]) -> Output {
        self.deployctl_timeout(args, COMMAND_TIMEOUT)
    }

    /// `deployctl --project DIR ARGS...`; killed (and the test failed) after `timeout`.
    /// Output goes to files, so it is never a terminal: plain lines, no progress bar.
    pub fn deployctl_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        self.deployctl_in(self.path(), &[], args, timeout)
    }

    /// `deployctl --project DIR ARGS...` run in directory `cwd` with extra environment
    /// variables `envs`; killed (and the test failed) after `timeout`.
    pub fn deployctl_in(
        &self,
        cwd: &Path,
        envs: &[(&str, &str)],
        args: &[&str],
        timeout: Duration,
    ) -> Output {
        let mut full: Vec<&str> = vec!["--project"];
        let dir = self.path().to_string_lossy().into_owned();
        full.push(&dir);
        full.extend_from_slice(args);
        self.spawn_deployctl(cwd, envs, &full, args, timeout)
    }

    /// `deployctl ARGS...` exactly as a person types it in the project directory (no
    /// `--project`: deployctl finds the project by its `.deployctl.yaml`), e.g. a command
    /// deployctl printed as advice.
    pub fn deployctl_as_typed(&self, args: &[&str]) -> Output {
        self.spawn_deployctl(self.path(), &[], args, args, COMMAND_TIMEOUT)
    }

    fn spawn_deployctl(
        &self,
        cwd: &Path,
        envs: &[(&str, &str)],
        argv: &[&str],
        args: &[&str],
        timeout: Duration,
    ) -> Output {
        let n = next_id();
        let out_path = self.path().join(format!(".e2e-out-{n}"));
        let err_path = self.path().join(format!(".e2e-err-{n}"));
        let mut child = Command::new(deployctl_bin())
            .args(argv)
            .current_dir(cwd)
            .envs(
                self.env
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .envs(envs.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", deployctl_bin().display()));
        let mut status = None;
        let finished = wait_until(timeout, || {
            status = child.try_wait().expect("waiting for deployctl");
            status.is_some()
        });
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = Output {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        };
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        // The test harness captures this and shows it only when the test fails (or with
        // --nocapture): the whole conversation with deployctl, in order.
        eprintln!("{out}\n");
        assert!(
            finished,
            "deployctl did not finish within {timeout:?}\n{out}"
        );
        out
    }

    /// `deployctl run NAME --env ENV --repo URL --ref REF --command "python3 app.py"
    /// --health-path /health EXTRA...`: the stdlib app of [`crate::GitRepo::commit_app`].
    pub fn run_app(
        &self,
        env: &str,
        name: &str,
        repo: &str,
        git_ref: &str,
        extra: &[&str],
    ) -> Output {
        let mut args = vec![
            "run",
            name,
            "--env",
            env,
            "--repo",
            repo,
            "--ref",
            git_ref,
            "--command",
            "python3 app.py",
            "--health-path",
            "/health",
        ];
        args.extend_from_slice(extra);
        self.deployctl(&args)
    }

    /// `deployctl run NAME --repo REPO --command COMMAND --port PORT EXTRA...` on the
    /// project's default env.
    pub fn run_on_port(
        &self,
        name: &str,
        repo: &str,
        command: &str,
        port: &str,
        extra: &[&str],
    ) -> Output {
        let mut args = vec![
            "run",
            name,
            "--repo",
            repo,
            "--command",
            command,
            "--port",
            port,
        ];
        args.extend_from_slice(extra);
        self.deployctl(&args)
    }

    /// `deployctl declare env agent NAME --address http://GRPC` (must succeed).
    pub fn declare_env(&self, name: &str, agent: &Agent) {
        self.declare_env_of(name, &[agent]);
    }

    /// `deployctl declare env agent NAME --address A --address B ...` (must succeed).
    pub fn declare_env_of(&self, name: &str, agents: &[&Agent]) {
        let addresses: Vec<String> = agents.iter().map(|a| a.address()).collect();
        let mut args = vec!["declare", "env", "agent", name];
        for a in &addresses {
            args.extend(["--address", a.as_str()]);
        }
        self.deployctl(&args).ok();
    }

    /// `history NAME --output json`'s releases (must succeed).
    pub fn history(&self, name: &str) -> Vec<Value> {
        let out = self.deployctl(&["history", name, "--output", "json"]);
        out.ok();
        out.json()["releases"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no releases in the history of {name}\n{out}"))
    }

    /// `deployctl status NAME --output json`, and the one deployment in it.
    pub fn status_json(&self, name: &str) -> (Output, Value) {
        let out = self.deployctl(&["status", name, "--output", "json"]);
        let v = out.json();
        let dep = v["deployments"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no deployment {name:?} in status\n{out}"));
        (out, dep)
    }

    /// Every instance of `name` on its (first) agent from `status --output json`'s
    /// `replicas` (empty with one instance).
    pub fn replicas_json(&self, name: &str) -> Vec<Value> {
        let (_, dep) = self.status_json(name);
        dep["instances"][0]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
