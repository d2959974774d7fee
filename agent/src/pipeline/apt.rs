//! The apt part of the packages step: Debian packages the app needs on the node (a system
//! library, a command-line tool), installed with `apt-get` before the venv is built (a pip
//! package may build against them). Only where the agent's config says `allow_apt = true`
//! (the agent then runs as root): they are the node's, shared by every app, and stay
//! installed. One apt run at a time on the node; none at all when every package is there.

use std::path::PathBuf;
use std::time::Duration;

use super::events::{Events, StepError, PACKAGES};
use crate::process::Launch;

/// One apt run at a time: dpkg holds a node-wide lock, and a second run would fail on it.
static APT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs `packages` (checked by [`crate::spec::is_apt_package`]) unless all are installed already.
pub(super) async fn install(
    packages: &[String],
    timeout: Duration,
    events: &Events,
) -> Result<(), StepError> {
    if packages.is_empty() {
        return Ok(());
    }
    let _one = APT.lock().await;
    let list = packages.join(" ");
    if missing(packages).await.is_empty() {
        events.info(PACKAGES, format!("apt: {list} already installed"));
        return Ok(());
    }
    events
        .step(PACKAGES, format!("apt-get install {list}"), async {
            let began = tokio::time::Instant::now();
            match apt_get_install(packages, timeout, events).await {
                Err(e) if needs_update(&e) => {
                    // No package lists yet (a fresh machine or image): fetch them once.
                    events.output(PACKAGES, "the package lists do not know it: apt-get update");
                    run(&["update"], timeout, events).await?;
                    let left = timeout.saturating_sub(began.elapsed());
                    apt_get_install(packages, left, events).await?;
                }
                other => other?,
            }
            Ok(((), format!("installed {list} with apt-get")))
        })
        .await
}

/// The packages among `packages` that dpkg does not have installed.
async fn missing(packages: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in packages {
        let name = p.split('=').next().unwrap_or(p);
        let status = tokio::process::Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", name])
            .stderr(std::process::Stdio::null())
            .output()
            .await;
        let installed = status.is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).ends_with(" installed")
        });
        if !installed {
            out.push(p.clone());
        }
    }
    out
}

async fn apt_get_install(
    packages: &[String],
    timeout: Duration,
    events: &Events,
) -> Result<(), StepError> {
    let mut args = vec!["install", "-y", "--no-install-recommends", "--"];
    args.extend(packages.iter().map(String::as_str));
    run(&args, timeout, events).await
}

/// `apt-get ARGS`, its output as the step's output lines.
async fn run(args: &[&str], timeout: Duration, events: &Events) -> Result<(), StepError> {
    let launch = Launch {
        command: String::new(),
        cwd: PathBuf::from("/"),
        env: vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
        path_prefix: None,
        walls: None,
        cgroups: Vec::new(),
    };
    let shown = format!("apt-get {}", args.join(" "));
    super::install_cmd::install_command("apt-get", args, &shown, &launch, timeout, events).await
}

/// Whether an install failed because apt has no (or stale) package lists.
fn needs_update(e: &StepError) -> bool {
    e.tail.iter().any(|l| {
        l.contains("Unable to locate package") || l.contains("has no installation candidate")
    })
}
