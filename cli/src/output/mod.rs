//! How progress and results are shown: a live spinner line on a terminal, plain lines
//! otherwise, or one JSON object per line with `--output json`.

use std::io::IsTerminal;
use std::time::Duration;

mod visible;
pub(crate) use visible::{visible_bytes, visible_on, Stream};

use deployctl_proto::v1::deploy_event::Phase;
use deployctl_proto::v1::DeployEvent;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub(crate) enum Format {
    #[default]
    Text,
    Json,
}

/// Renders deploy events from one or more agents.
pub(crate) struct Progress {
    format: Format,
    /// Prefix lines with the agent (more than one agent).
    prefix: bool,
    multi: Option<MultiProgress>,
    verbose: bool,
}

/// One agent's progress line.
pub(crate) struct AgentProgress {
    agent: String,
    format: Format,
    prefix: bool,
    bar: Option<ProgressBar>,
    verbose: bool,
}

impl Progress {
    pub(crate) fn new(format: Format, agents: usize, verbose: bool) -> Self {
        let tty = std::io::stdout().is_terminal() && format == Format::Text;
        Progress {
            format,
            prefix: agents > 1,
            multi: tty.then(MultiProgress::new),
            verbose,
        }
    }

    pub(crate) fn agent(&self, agent: &str) -> AgentProgress {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            if self.prefix {
                bar.set_prefix(format!("[{agent}] "));
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        AgentProgress {
            agent: agent.to_string(),
            format: self.format,
            prefix: self.prefix,
            bar,
            verbose: self.verbose,
        }
    }
}

/// A commit as every command shows it: its first 10 hex digits.
pub(crate) fn short_commit(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

pub(crate) fn ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

impl AgentProgress {
    fn line(&self, text: String) {
        let text = if self.prefix {
            format!("[{}] {text}", self.agent)
        } else {
            text
        };
        // Agents relay what others wrote (commit messages, refs, an app's output).
        let text = visible_on(Stream::Stdout, &text).into_owned();
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    pub(crate) fn event(&self, e: &DeployEvent) {
        if self.format == Format::Json {
            let phase = Phase::try_from(e.phase).unwrap_or(Phase::Unspecified);
            let obj = serde_json::json!({
                "agent": self.agent,
                "step": e.step,
                "phase": phase.as_str_name().to_lowercase(),
                "message": e.message,
                "elapsed_ms": e.elapsed_ms,
            });
            println!("{obj}");
            return;
        }
        if e.outcome.is_some() {
            // The outcome is summarised by the command itself.
            return;
        }
        let step = e.step.as_str();
        let message = visible_on(Stream::Stdout, &e.message);
        let e = DeployEvent {
            message: message.into_owned(),
            ..e.clone()
        };
        match Phase::try_from(e.phase).unwrap_or(Phase::Unspecified) {
            Phase::Started => match &self.bar {
                Some(bar) => bar.set_message(format!("{step}: {}", e.message)),
                None => self.line(format!("  … {step}: {}", e.message)),
            },
            Phase::Output => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("{step}: {}", truncate(&e.message, 100)));
                }
                if self.verbose {
                    self.line(format!("      | {}", e.message));
                }
            }
            Phase::Done => self.line(format!("  ✓ {step}: {} ({})", e.message, ms(e.elapsed_ms))),
            Phase::Skipped => self.line(format!("  - {step}: {}", e.message)),
            Phase::Failed => self.line(format!("  ✗ {step}: {} ({})", e.message, ms(e.elapsed_ms))),
            Phase::Info | Phase::Unspecified => self.line(format!("    {step}: {}", e.message)),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Human durations for tables: 45s, 12m, 3h, 2d.
pub(crate) fn age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Bytes for people in binary units, as memory is sold: "512 MiB", "1.5 GiB", "24 GiB".
pub(crate) fn size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

pub(crate) fn bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b == 0 {
        "-".into()
    } else if (b as f64) < 1024.0 * MIB {
        format!("{:.0} MiB", b as f64 / MIB)
    } else {
        format!("{:.1} GiB", b as f64 / (1024.0 * MIB))
    }
}

/// Prints rows as aligned columns.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let fmt = |cells: Vec<String>| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        line.trim_end().to_string()
    };
    println!("{}", fmt(header.iter().map(|s| s.to_string()).collect()));
    for r in rows {
        println!("{}", fmt(r.clone()));
    }
}
