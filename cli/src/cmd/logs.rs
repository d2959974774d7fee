//! `logs NAME [-f] [-n N] [--deploy]`: the app's output (or the deploy steps') from every
//! instance; lines are prefixed with the agent when there is more than one.

use std::io::Write;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use crate::client::{self, Call, CallError, Limit};
use crate::decl;
use crate::error::Reported;
use crate::output;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl logs iris -f                     the last 100 lines, then new ones as they come
  deployctl logs iris --since 10m --timestamps
  deployctl logs iris --since 2026-12-04T09:00:00Z -n 20
  deployctl logs iris --deploy               the last deploy's steps

Times are when the agent received each line (within a fifth of a second; lines written
while the agent was not running carry the time it came back), in UTC.")]
pub(crate) struct Args {
    /// The deployment whose logs to show (as in `deployctl status`)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Keep printing new output as it comes (Ctrl-C to stop)
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each instance (0: all) [default: 100, or all with --since]
    #[arg(short = 'n', long = "lines")]
    pub lines: Option<u32>,
    /// Only lines from the last DURATION (10m, 2h) or since a time (2026-12-04T09:00:00Z)
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Start each line with the time the agent received it (UTC)
    #[arg(long, short = 't')]
    pub timestamps: bool,
    /// The deploy steps' output (installer, start script, health) instead of the app's
    #[arg(long)]
    pub deploy: bool,
    /// Print the bytes as the app wrote them, control characters too (on a terminal they
    /// are shown escaped, \x1b, so an app cannot clear the screen or fake a line)
    #[arg(long)]
    pub raw: bool,
}

pub(crate) async fn run(project: &Project, args: Args) -> anyhow::Result<()> {
    decl::validate_name("name", &args.name)?;
    let st = state::open(project)?.load().await?;
    let (env, _) = state::env_of(project, &st, &args.name)?;
    let target = client::resolve_env(project, &env)?.no_autostart();
    let prefix = target.addresses.len() > 1;
    let escape = !args.raw && output::Stream::Stdout.is_terminal();
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let req = pb::LogsRequest {
        name: args.name.clone(),
        follow: args.follow,
        lines: args.lines.unwrap_or(if since.is_some() { 0 } else { 100 }),
        deploy: args.deploy,
        since_unix_ms: since.unwrap_or(0),
        timestamps: args.timestamps,
    };
    // Opening each stream is bounded by the timeout; following it, by keepalive pings
    // (`-f` legitimately lasts forever, a hung agent does not answer them).
    let mut streams = client::for_each_agent(&target, Limit::Stream, move |c| {
        print_stream(c, req.clone(), prefix, escape)
    });
    // An agent that fails is named at once: with -f the others go on.
    let mut failed = false;
    while let Some(reply) = streams.next().await {
        if let Err(e) = reply.result {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    if failed {
        Err(anyhow!(Reported))
    } else {
        Ok(())
    }
}

/// Copies one agent's log stream to stdout, each line prefixed with the agent when asked.
async fn print_stream(
    mut c: Call,
    req: pb::LogsRequest,
    prefix: bool,
    escape: bool,
) -> Result<(), CallError> {
    let mut stream = client::answer(c.timeout, c.client.logs(req))
        .await?
        .into_inner();
    loop {
        let chunk = match stream.message().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(()),
            Err(s) => return Err(CallError::Broken(c.broken(&s).await)),
        };
        let data = match escape {
            true => output::visible_bytes(&chunk.data).into_owned(),
            false => chunk.data,
        };
        let mut out = std::io::stdout().lock();
        if prefix {
            for line in data.split_inclusive(|b| *b == b'\n') {
                let _ = write!(out, "[{}] ", c.address);
                let _ = out.write_all(line);
            }
        } else {
            let _ = out.write_all(&data);
        }
        let _ = out.flush();
    }
}

/// `--since`: a duration back from now, or a time (RFC 3339); unix milliseconds.
fn parse_since(v: &str) -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(v.trim()) {
        Ok(d) => now.checked_sub(d).unwrap_or(std::time::UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(v.trim()).map_err(|_| {
            crate::error::bad_input(format!(
                "--since: {v:?} is neither a duration (10m, 2h) nor a time (2026-12-04T09:00:00Z)"
            ))
        })?,
    };
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
        .max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(
            parse_since("2026-12-04T09:00:00Z").unwrap(),
            1_796_374_800_000
        );
        let ten_min_ago = parse_since("10m").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now - ten_min_ago >= 600_000 && now - ten_min_ago < 660_000);
        assert!(parse_since("yesterday").is_err());
    }
}
