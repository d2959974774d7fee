//! `local start` / `local status` / `local stop`: the agent `deployctl` starts by itself for
//! the built-in env `local` (when nothing answers at its address: `run` and every command
//! that changes something; the read-only ones say to run `local start`), found by its data
//! directory.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Subcommand;
use deployctl_proto::v1 as pb;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::client::{self, Call, Limit, Target};
use crate::output::Format;
use crate::project::Project;

mod proxy;

/// How long `local stop` waits for the agent to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(15);

#[derive(Subcommand, Debug)]
pub(crate) enum Local {
    /// Start the local agent in the background when nothing answers at its address (`run`
    /// and every command that changes something on env local start it too; `status`,
    /// `logs`, `nodes`, `plan`, `check`, `dashboard` and `secret list` do not)
    #[command(after_help = "\
Examples:
  deployctl local start
  DEPLOYCTL_LOCAL_ADDRESS=127.0.0.1:7170 deployctl local start

Exit codes: 0 it answers (started now or already running), 1 it did not come up.")]
    Start,
    /// Whether the local agent runs: its address, pid, version, data directory and log
    #[command(after_help = "\
Examples:
  deployctl local status
  deployctl local status --output json

Exit codes: 0 it answers, 1 it does not.")]
    Status,
    /// Stop the local agent (SIGTERM); its apps keep running and are taken back by the
    /// next agent (stop them first with `deployctl stop NAME` or `deployctl remove NAME`),
    /// and the node proxy keeps serving their ports (it says which; it stops with the last
    /// of them removed or stopped, and now when no deployment is left)
    #[command(after_help = "\
Examples:
  deployctl local stop

Exit codes: 0 stopped (or was not running), 1 it did not exit within 15 s.")]
    Stop,
}

pub(crate) async fn run(project: &Project, cmd: Local, format: Format) -> anyhow::Result<()> {
    match cmd {
        Local::Start => start(project, format).await,
        Local::Status => status(project, format).await,
        Local::Stop => stop(project, format).await,
    }
}

async fn start(project: &Project, format: Format) -> anyhow::Result<()> {
    let address = client::normalize(&client::local_address());
    let target = Target {
        addresses: vec![address.clone()],
        builtin_local: true,
        ..client::resolve_env(project, "local")?
    };
    // Starts it (saying so, on stderr) when nothing answers, and waits for it.
    client::connect(&target, &address).await?;
    status(project, format).await
}

/// What the local agent says of itself, if it answers (it is not started for this).
async fn node_info(project: &Project) -> anyhow::Result<Result<pb::NodeInfoReply, String>> {
    let mut target = client::resolve_env(project, "local")?.no_autostart();
    target.addresses = vec![client::normalize(&client::local_address())];
    let mut replies = client::for_each_agent(&target, Limit::Answer, |mut c: Call| async move {
        Ok(c.client
            .node_info(pb::NodeInfoRequest {})
            .await?
            .into_inner())
    });
    Ok(match replies.next().await {
        Some(r) => r.result.map_err(|e| e.message),
        None => Err("no address".into()),
    })
}

async fn status(project: &Project, format: Format) -> anyhow::Result<()> {
    let address = client::local_address();
    let data_dir = client::local_data_dir();
    let log = data_dir.join("agent.log");
    let pids = client::local_agent_pids();
    let info = node_info(project).await?;
    match format {
        Format::Json => {
            let v = match &info {
                Ok(i) => serde_json::json!({
                    "address": address, "running": true, "pids": pids, "version": i.version,
                    "deployments": i.deployments, "uptime_s": i.uptime_s,
                    "data_dir": i.data_dir, "log": log,
                }),
                Err(e) => serde_json::json!({
                    "address": address, "running": false, "pids": pids, "reason": e,
                    "data_dir": data_dir, "log": log,
                }),
            };
            println!("{v}");
        }
        Format::Text => match &info {
            Ok(i) => {
                let pid = match pids.as_slice() {
                    [] => "started by hand or elsewhere".to_string(),
                    p => format!(
                        "pid {}",
                        p.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                    ),
                };
                println!(
                    "The local agent answers at {address} ({pid}), version {}, up {}, {} deployment(s)",
                    i.version,
                    humantime::format_duration(Duration::from_secs(i.uptime_s)),
                    i.deployments
                );
                println!("  data: {}", i.data_dir);
                println!("  log:  {}", log.display());
            }
            Err(e) => {
                println!("No local agent answers at {address}: {e}");
                if !pids.is_empty() {
                    println!(
                        "  a deploy-agent with its data directory runs (pid {:?}) but does not answer; see {}",
                        pids,
                        log.display()
                    );
                }
                println!(
                    "  `deployctl run` and the commands that change something on env local start it too; data would go to {}",
                    data_dir.display()
                );
            }
        },
    }
    if info.is_err() {
        return Err(crate::error::Reported.into());
    }
    Ok(())
}

async fn stop(project: &Project, format: Format) -> anyhow::Result<()> {
    let pids = client::local_agent_pids();
    let say = |text: String, json: serde_json::Value| match format {
        Format::Text => println!("{text}"),
        Format::Json => println!("{json}"),
    };
    if pids.is_empty() {
        say(
            format!(
                "No local agent runs (none with data directory {})",
                client::local_data_dir().display()
            ),
            serde_json::json!({"stopped": [], "running": false}),
        );
        return Ok(());
    }
    // How many deployments it has (when it answers): with none, its node proxy goes too.
    let deployments = node_info(project)
        .await
        .ok()
        .and_then(|i| i.ok())
        .map(|i| i.deployments);
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    let began = Instant::now();
    let gone = |pid: &u32| !std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(*pid);
    while !pids.iter().all(gone) {
        if began.elapsed() > STOP_WAIT {
            let left: Vec<&u32> = pids.iter().filter(|p| !gone(p)).collect();
            return Err(anyhow!(
                "the local agent (pid {left:?}) did not exit within {}s of SIGTERM; see {}",
                STOP_WAIT.as_secs(),
                client::local_data_dir().join("agent.log").display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (proxy_text, proxy_json) = left_proxy(deployments).await;
    say(
        format!(
            "Stopped the local agent (pid {}). Its apps keep running; the next agent started for env local takes them back{proxy_text}",
            pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ),
        serde_json::json!({"stopped": pids, "running": false, "proxy": proxy_json}),
    );
    Ok(())
}

/// The node proxy the agent left: what it keeps serving and how to stop it, or stopped
/// when it serves no deployment (or the agent had none). The words for the text output
/// (a line of its own) and the JSON (`null` when no proxy runs).
async fn left_proxy(deployments: Option<u32>) -> (String, serde_json::Value) {
    let Some(p) = proxy::find(&client::local_data_dir()) else {
        return (String::new(), serde_json::Value::Null);
    };
    let serving: Vec<serde_json::Value> = p
        .routes
        .iter()
        .map(|(name, listen)| serde_json::json!({"name": name, "listen": listen}))
        .collect();
    if !p.routes.is_empty() && deployments != Some(0) {
        return (
            format!(
                "\nThe node proxy (pid {}) keeps serving {}; {}",
                p.pid,
                p.serving(),
                p.how_to_stop()
            ),
            serde_json::json!({"pid": p.pid, "serving": serving, "stopped": false}),
        );
    }
    let stopped = p.stop().await;
    let text = if stopped {
        format!(
            "\nStopped the node proxy (pid {}) too: no deployment is left",
            p.pid
        )
    } else {
        format!(
            "\nThe node proxy (pid {}) serves no deployment but did not exit after SIGTERM and SIGKILL",
            p.pid
        )
    };
    (
        text,
        serde_json::json!({"pid": p.pid, "serving": serving, "stopped": stopped}),
    )
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}
