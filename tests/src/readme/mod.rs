//! README.md as a test: its code blocks, what each is marked as, and a loose comparison of a
//! documented output with a real one.
//!
//! A small harness of our own rather than `trycmd`: the README's blocks are shell (`cd`,
//! `~`, `<<<`, line continuations, one block's directory carried to the next) run against
//! agents the test starts, and their documented outputs carry timings, pids, hashes and
//! addresses, so they are matched loosely ([`normalize`]), not as snapshots.
//!
//! A block is marked by an HTML comment on the line before its opening fence:
//!
//! * `<!-- readme-test: not run: REASON -->`: shown, never run (systemd, a second machine...).
//! * `<!-- readme-test: output -->`: what the previous run block printed: each of its lines
//!   must appear, in order and [`normalize`]d, in that block's output.
//! * `<!-- readme-test: step NAME -->`: run, with what the test's step NAME adds (the agents
//!   it stands in for, a replaced placeholder, an expected exit code).
//!
//! An unmarked `sh` block is run as it is; an unmarked block of any other kind is a file or an
//! illustration, except one whose first line is a `$ ` prompt, which must be marked.

mod cleanup;
mod files;
mod node;
mod run;

pub use cleanup::{kill_under, remove_cgroups_named_under};
pub use files::check_files;
pub use node::NodeAgent;
pub use run::{Ran, Runner};

/// What a block's mark says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// No mark.
    None,
    /// `not run: REASON`.
    NotRun(String),
    /// `output`.
    Output,
    /// `step NAME`.
    Step(String),
}

/// One fenced code block of the README.
#[derive(Debug, Clone)]
pub struct Block {
    /// The line of its opening fence (1-based).
    pub line: usize,
    /// Its language (`sh`, `yaml`, ...; empty when none).
    pub lang: String,
    /// Its text, without the fences.
    pub text: String,
    pub mark: Mark,
}

impl Block {
    /// Whether the README means it to be run.
    pub fn is_command(&self) -> bool {
        self.lang == "sh"
            || (self.lang.is_empty() && self.text.trim_start().starts_with("$ "))
            || matches!(self.mark, Mark::Step(_))
    }
}

const MARK_START: &str = "<!-- readme-test:";

/// The code blocks of a Markdown text, in order; an unknown mark is an error naming its line.
pub fn blocks(markdown: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let open = i;
        let mut text = String::new();
        i += 1;
        while i < lines.len() && lines[i].trim_start() != "```" {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        if i == lines.len() {
            return Err(format!("line {}: a code block is never closed", open + 1));
        }
        i += 1;
        let before = lines[..open].iter().rev().find(|l| !l.trim().is_empty());
        let mark = match before.map(|l| l.trim()) {
            Some(l) if l.starts_with(MARK_START) => {
                parse_mark(l).map_err(|e| format!("line {}: {e}", open))?
            }
            _ => Mark::None,
        };
        out.push(Block {
            line: open + 1,
            lang: lang.trim().to_string(),
            text,
            mark,
        });
    }
    Ok(out)
}

fn parse_mark(line: &str) -> Result<Mark, String> {
    let inner = line
        .strip_prefix(MARK_START)
        .and_then(|r| r.strip_suffix("-->"))
        .ok_or_else(|| format!("{line:?}: a mark is one line: <!-- readme-test: ... -->"))?
        .trim();
    if inner == "output" {
        return Ok(Mark::Output);
    }
    if let Some(reason) = inner.strip_prefix("not run:") {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err("`not run:` needs a reason".into());
        }
        return Ok(Mark::NotRun(reason.to_string()));
    }
    if let Some(name) = inner.strip_prefix("step ") {
        return Ok(Mark::Step(name.trim().to_string()));
    }
    Err(format!(
        "{inner:?}: a mark is `not run: REASON`, `output` or `step NAME`"
    ))
}

/// A line with what changes from run to run made generic: addresses (`A`), hex hashes of 7
/// or more digits (`H`), numbers (`N`), time units after a number (`U`), and `home` (the
/// documented home directory, or the test's) as `~`.
pub fn normalize(line: &str, homes: &[&str]) -> String {
    let mut line = line.trim().to_string();
    for home in homes {
        if !home.is_empty() {
            line = line.replace(home, "~");
        }
    }
    let mut out = Vec::new();
    let mut after_number = false;
    for word in line.split_whitespace() {
        let (w, number) = normalize_word(word, after_number);
        after_number = number;
        out.push(w);
    }
    out.join(" ")
}

/// One word, its punctuation kept; and whether it was a number.
fn normalize_word(word: &str, after_number: bool) -> (String, bool) {
    if let Some((scheme, rest)) = word.split_once("://") {
        return (
            format!("{scheme}://{}", normalize_word(rest, false).0),
            false,
        );
    }
    let start = word
        .find(|c: char| c.is_ascii_alphanumeric())
        .unwrap_or(word.len());
    let end = word
        .rfind(|c: char| c.is_ascii_alphanumeric())
        .map_or(start, |i| i + 1);
    let (lead, core, trail) = (&word[..start], &word[start..end], &word[end..]);
    let (core, number) = classify(core, after_number);
    (format!("{lead}{core}{trail}"), number)
}

fn classify(core: &str, after_number: bool) -> (String, bool) {
    let is_num = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_digit() || c == '.')
            && s.starts_with(|c: char| c.is_ascii_digit())
    };
    let host = core.split(':').next().unwrap_or(core);
    let port_ok = core
        .split_once(':')
        .is_none_or(|(_, p)| p.chars().take_while(|c| c.is_ascii_digit()).count() > 0);
    if host.split('.').count() == 4 && host.split('.').all(|p| p.parse::<u8>().is_ok()) && port_ok {
        let path = core
            .split_once(':')
            .map(|(_, p)| p.trim_start_matches(|c: char| c.is_ascii_digit()))
            .unwrap_or("");
        return (format!("A{path}"), false);
    }
    if is_num(core) {
        return ("N".into(), true);
    }
    if core.len() >= 7
        && core.chars().all(|c| c.is_ascii_hexdigit())
        && core.chars().any(|c| c.is_ascii_digit())
    {
        return ("H".into(), false);
    }
    if after_number && matches!(core, "ms" | "s" | "us" | "µs" | "m" | "min") {
        return ("U".into(), false);
    }
    (core.to_string(), false)
}

/// The documented lines (normalized) that are not found, in order, among the real output's.
pub fn missing_lines(documented: &str, real: &str, homes: &[&str]) -> Vec<String> {
    let real: Vec<String> = real.lines().map(|l| normalize(l, homes)).collect();
    let mut at = 0;
    let mut missing = Vec::new();
    for line in documented.lines().filter(|l| !l.trim().is_empty()) {
        let want = normalize(line, homes);
        match real[at..].iter().position(|r| *r == want) {
            Some(i) => at += i + 1,
            None => missing.push(format!("{line}\n    (normalized: {want})")),
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_marks() {
        let md = "text\n\n<!-- readme-test: not run: systemd -->\n```sh\nsudo x\n```\n\n```\n$ deployctl check\nout\n```\n<!-- readme-test: output -->\n```\nok\n```\n<!-- readme-test: step team -->\n\n```sh\na\nb\n```\n```yaml\nk: v\n```\n";
        let b = blocks(md).unwrap();
        assert_eq!(b.len(), 5);
        assert_eq!(b[0].mark, Mark::NotRun("systemd".into()));
        assert_eq!((b[0].line, b[0].lang.as_str()), (4, "sh"));
        assert_eq!(b[0].text, "sudo x\n");
        assert!(b[1].is_command() && b[1].mark == Mark::None);
        assert_eq!(b[2].mark, Mark::Output);
        assert_eq!(b[3].mark, Mark::Step("team".into()));
        assert!(!b[4].is_command());
        assert!(blocks("<!-- readme-test: maybe -->\n```sh\nx\n```\n").is_err());
        assert!(blocks("<!-- readme-test: not run: -->\n```sh\nx\n```\n").is_err());
        assert!(blocks("```sh\nx\n").is_err());
    }

    #[test]
    fn outputs_match_loosely() {
        let homes = ["/home/me", "/tmp/x/home"];
        let doc = "Deploying iris (/home/me/iris-api at v1.0.0) to env local: http://127.0.0.1:7070\n  ✓ resolve: v1.0.0 is 0112ce2c5d (4 ms)\n  ✓ packages: built environment 5f2c9a0e1b7d3c4a (1.4 s)\n✓ iris release 1 (v1.0.0 0112ce2c5d) is live at http://127.0.0.1:8000 — deployed in 1.9 s\n";
        let real = "warning: something\nDeploying iris (/tmp/x/home/iris-api at v1.0.0) to env local: http://127.77.3.4:7070\n  ✓ resolve: v1.0.0 is 9f8e7d6c5b (12 ms)\n  ✓ packages: built environment 0a1b2c3d4e5f6a7b (812 ms)\n✓ iris release 1 (v1.0.0 9f8e7d6c5b) is live at http://127.77.3.4:8000 — deployed in 2.3 s\n";
        assert_eq!(missing_lines(doc, real, &homes), Vec::<String>::new());
        // A changed word, a line out of order, a missing line: each is reported.
        let wrong = real.replace("built environment", "reused environment");
        assert_eq!(missing_lines(doc, &wrong, &homes).len(), 1);
        let swapped = "  ✓ packages: built environment 0a1b2c3d4e5f6a7b (812 ms)\n  ✓ resolve: v1.0.0 is 9f8e7d6c5b (12 ms)\n";
        assert_eq!(missing_lines(doc, swapped, &homes).len(), 3);
        assert_eq!(normalize("pid 4242 (0 ms)", &[]), "pid N (N U)");
        assert_eq!(normalize("at 127.0.0.1:41327,", &[]), "at A,");
        assert_eq!(normalize("release 12 drained", &[]), "release N drained");
    }
}
