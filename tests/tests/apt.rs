//! `--apt`: Debian packages for the node, installed by the agent with apt-get where its
//! config says `allow_apt = true`; refused with the fix everywhere else. Real apt-get, a
//! real package from Debian's mirror (figlet, ~0.2 MB), removed again afterwards.

use std::process::Command;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";
const PACKAGE: &str = "figlet";

/// A stdlib app that reports where `figlet` is on its PATH.
const APP: &str = r#"
import json, os, shutil
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"figlet": shutil.which("figlet")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
}

fn apt_remove() {
    let _ = Command::new("apt-get")
        .args(["remove", "-y", "-q", PACKAGE])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
}

/// Removes the package when the test ends, however it ends: the next run installs it again.
struct Removed;

impl Drop for Removed {
    fn drop(&mut self) {
        apt_remove();
    }
}

#[test]
fn apt_packages_are_installed_where_the_agent_allows_and_refused_elsewhere() {
    require_root("apt-get installs for the whole node");
    require_tool("apt-get", "a Debian-based machine");
    apt_remove();
    let _removed = Removed;
    assert!(
        !installed(),
        "{PACKAGE} must not be installed before the test"
    );
    let repo = GitRepo::new();
    repo.write("app.py", APP);
    repo.commit("figlet app");

    // Default config: refused up front as bad input (exit 2), naming the field and the fix.
    let plain = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &plain);
    let run = |p: &Project, extra: &[&str]| {
        let mut args = vec!["run", "banner", "--env", ENV, "--repo"];
        let url = repo.url();
        args.push(&url);
        args.extend_from_slice(&["--command", "python3 app.py"]);
        args.extend_from_slice(extra);
        p.deployctl(&args)
    };
    run(&project, &["--apt", PACKAGE])
        .expect_code(2)
        .mentions("packages.apt: this agent does not install apt packages (allow_apt = false");
    assert!(!installed());
    drop(project);
    drop(plain);

    // Allowed: installed before the app starts, so the app finds it.
    let agent = Agent::start_with(&loopback(), "allow_apt = true\n", &[]);
    let project = Project::for_agent(ENV, &agent);
    run(&project, &["--apt", PACKAGE])
        .ok()
        .mentions(&format!("apt-get install {PACKAGE}"));
    assert!(installed(), "dpkg knows {PACKAGE} after the deploy");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert!(
        served["figlet"]
            .as_str()
            .is_some_and(|p| p.ends_with("/figlet")),
        "the app finds figlet: {served}"
    );

    // Installed already: the next deploy does not run apt-get.
    repo.write("README", "again\n");
    repo.commit("again");
    run(&project, &[])
        .ok()
        .mentions(&format!("apt: {PACKAGE} already installed"));

    // Nothing apt-get could take for an option gets through.
    run(&project, &["--apt=-oDebug::pkgProblemResolver=1"])
        .expect_code(2)
        .mentions("packages.apt:");
}
