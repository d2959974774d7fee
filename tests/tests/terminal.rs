//! An app's output (and what a failed deploy relays of it) cannot steer the terminal of the
//! person reading it: on a terminal (a pty made by util-linux `script`), escape sequences
//! and carriage returns are shown escaped; `logs --raw` and a pipe keep the bytes.

use std::process::Command;

use deployctl_e2e::*;

const ENV: &str = "tty";

/// Prints a line that would clear the screen, retitle the window and overwrite itself with
/// a fake success, then serves (or, with `FAIL=1`, exits).
const APP: &str = r#"import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
print("hostile \x1b[2J\x1b]0;pwned\x07 deploy failed\r\u2713 all good", flush=True)
if os.environ.get("FAIL"):
    sys.exit(1)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

/// `deployctl ARGS` on a terminal: util-linux `script` gives it a pty; what it printed.
fn on_a_terminal(project: &Project, args: &[&str]) -> String {
    require_tool("script", "util-linux (Debian's bsdutils)");
    let mut line = format!(
        "{} --project {}",
        deployctl_bin().display(),
        project.path().display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .expect("running script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("$ {line}\n{text}");
    text
}

#[test]
fn an_apps_escape_sequences_are_shown_not_obeyed_on_a_terminal() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", APP);
    repo.commit("hostile output");
    let url = repo.url();
    project
        .deployctl(&["run", "app", "--repo", &url, "--command", "python3 app.py"])
        .ok();
    assert!(wait_until(std::time::Duration::from_secs(10), || agent
        .app_log("app")
        .contains("all good")));

    let shown = on_a_terminal(&project, &["logs", "app"]);
    assert!(
        shown.contains("hostile \\x1b[2J\\x1b]0;pwned\\x07 deploy failed\\x0d✓ all good"),
        "{shown:?}"
    );
    assert!(
        !shown.contains('\u{1b}'),
        "no escape byte reaches the terminal: {shown:?}"
    );

    let raw = on_a_terminal(&project, &["logs", "app", "--raw"]);
    assert!(raw.contains("\u{1b}[2J"), "--raw keeps the bytes: {raw:?}");
    let piped = project.deployctl(&["logs", "app"]);
    assert!(
        piped.stdout.contains("\u{1b}]0;pwned\u{7}"),
        "a pipe keeps the bytes"
    );

    // A deploy that fails relays the app's last output: escaped on a terminal too.
    let failed = on_a_terminal(
        &project,
        &[
            "run",
            "bad",
            "--repo",
            &url,
            "--command",
            "'python3 app.py'",
            "--port",
            "8001",
            "--env-var",
            "FAIL=1",
        ],
    );
    assert!(failed.contains("\\x1b]0;pwned\\x07"), "{failed:?}");
    assert!(!failed.contains("\u{1b}]0;"), "{failed:?}");
}
