//! Runs README blocks one after another the way a reader types them into one terminal: the
//! same home directory, the directory the last block ended in, the binaries the install
//! block put on `PATH`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// What a block did.
pub struct Ran {
    pub code: i32,
    /// Its standard output and error, interleaved as written.
    pub output: String,
    /// The script that ran (the block after its replacements).
    pub script: String,
}

/// One reader's terminal: a home directory of its own under a temporary root (0711, so the
/// apps' own users pass through to their releases), and the environment every block gets.
pub struct Runner {
    pub home: PathBuf,
    /// Everything the test makes lives here (agents' data, etcd, the home).
    pub root: PathBuf,
    state: PathBuf,
    env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

/// What every block starts with. The test runs as root, so `sudo X` is X (sudo itself would
/// reset `PATH` and the variables that place the test's agents).
const PRELUDE: &str = "sudo() { \"$@\"; }\n";

impl Runner {
    /// Starts in `start_dir` (the repository's root, where the README's first commands run).
    pub fn new(start_dir: &Path) -> Runner {
        let tmp = tempfile::Builder::new()
            .prefix("deployctl-readme-")
            .tempdir()
            .expect("creating the README test's directory");
        let root = tmp.path().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o711))
            .expect("opening the README test's directory to the apps' users");
        let home = root.join("home");
        let state = root.join("state");
        for dir in [&home, &state] {
            fs::create_dir_all(dir).expect("creating the README test's directories");
        }
        fs::set_permissions(&home, fs::Permissions::from_mode(0o711))
            .expect("opening the home directory to the apps' users");
        fs::write(state.join("cwd"), start_dir.to_string_lossy().as_bytes())
            .expect("writing the first directory");
        fs::write(state.join("prelude.sh"), PRELUDE).expect("writing the prelude");
        fs::write(state.join("previous.out"), "").expect("writing the previous output");
        // The machine's tools (python3, uv, git), but not the build's own binaries: the
        // install block puts deployctl and deploy-agent on PATH, in ~/.local/bin.
        let system_path = std::env::var("PATH").unwrap_or_default();
        let mut path = vec![home.join(".local/bin").to_string_lossy().into_owned()];
        path.extend(
            system_path
                .split(':')
                .filter(|d| !d.is_empty() && !d.contains("/target/"))
                .map(String::from),
        );
        let env = vec![
            ("HOME".into(), home.to_string_lossy().into_owned()),
            ("PATH".into(), path.join(":")),
            ("USER".into(), whoami()),
            ("LOGNAME".into(), whoami()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TERM".into(), "dumb".into()),
            ("NO_COLOR".into(), "1".into()),
            (
                "PREV_OUTPUT".into(),
                state.join("previous.out").to_string_lossy().into_owned(),
            ),
        ];
        Runner {
            home,
            root,
            state,
            env,
            _tmp: tmp,
        }
    }

    /// Sets a variable for every later block.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// The directory the last block ended in.
    pub fn cwd(&self) -> PathBuf {
        PathBuf::from(fs::read_to_string(self.state.join("cwd")).unwrap_or_default())
    }

    /// Runs `text` with bash (`set -eo pipefail`: the first failing command ends it), in the
    /// directory the previous block ended in; kills it (its whole process group) after
    /// `timeout`. Its output becomes `$PREV_OUTPUT` for the next block.
    pub fn run(&mut self, text: &str, timeout: Duration) -> Ran {
        let state = self.state.display();
        let script = format!(
            "set -eo pipefail\nsource {state}/prelude.sh\ncd \"$(cat {state}/cwd)\"\n{text}\npwd > {state}/cwd\n"
        );
        let path = self.state.join("block.sh");
        fs::File::create(&path)
            .and_then(|mut f| f.write_all(script.as_bytes()))
            .expect("writing the block's script");
        let out_path = self.state.join("block.out");
        let out = fs::File::create(&out_path).expect("creating the block's output file");
        let err = out.try_clone().expect("sharing the block's output file");
        let mut child = Command::new("bash")
            .arg(&path)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("starting bash");
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(status) = child.try_wait().expect("waiting for the block") {
                break status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                break -9;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = fs::read_to_string(&out_path).unwrap_or_default();
        fs::write(self.state.join("previous.out"), &output).expect("keeping the output");
        Ran {
            code,
            output,
            script: text.to_string(),
        }
    }
}

fn whoami() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}
