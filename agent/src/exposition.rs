//! The two text formats of `/metrics` and which one a scraper gets.
//!
//! prometheus-client encodes OpenMetrics 1.0. Prometheus asks for OpenMetrics first, but
//! many scrapers and checkers (older Prometheus, `promtool check metrics`, Telegraf, curl
//! users) read only the Prometheus text format 0.0.4, where OpenMetrics' counters look
//! broken: the family is `x` while its sample is `x_total`, so the sample has no HELP and
//! no TYPE. The agent answers 0.0.4 unless the scraper's `Accept` prefers OpenMetrics, and
//! derives 0.0.4 from the same OpenMetrics text ([`to_text_004`]), so the two can never list
//! different metrics.

use std::collections::HashSet;

/// The content type of OpenMetrics text.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub(crate) const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    OpenMetrics,
    Text004,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text004 => TEXT_004,
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it is acceptable (q > 0) and
    /// preferred at least as much as plain text; otherwise, and with no header, 0.0.4.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// The Prometheus text format 0.0.4 of an OpenMetrics text: counters' HELP and TYPE carry
/// the `_total` name of their sample, `unknown` is `untyped`, and the OpenMetrics-only lines
/// (`# UNIT`, `# EOF`) and exemplars are left out.
pub(crate) fn to_text_004(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| kind.trim() == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str("# HELP ");
            push_name(&mut out, name, &counters);
            out.push(' ');
            // OpenMetrics escapes `"` in HELP; 0.0.4 does not.
            out.push_str(&help.replace("\\\"", "\""));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            out.push_str("# TYPE ");
            push_name(&mut out, name, &counters);
            out.push(' ');
            out.push_str(match kind.trim() {
                "unknown" => "untyped",
                other => other,
            });
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF` and comments have no place in 0.0.4.
            continue;
        } else {
            // A sample, without an exemplar (` # {labels} value`).
            out.push_str(line.split_once(" # ").map_or(line, |(sample, _)| sample));
        }
        out.push('\n');
    }
    out
}

fn push_name(out: &mut String, name: &str, counters: &HashSet<&str>) {
    out.push_str(name);
    if counters.contains(name) {
        out.push_str("_total");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_and_scrapers_without_accept_get_what_they_read() {
        // Prometheus 2.x's own Accept header.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text004);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text004);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text004
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Text004
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Text004
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn counters_carry_their_total_name_and_openmetrics_lines_go() {
        let om = "# HELP x_restarts Restarts \\\"of\\\" it.\n# TYPE x_restarts counter\n\
                  x_restarts_total{d=\"a\"} 1 # {trace=\"t\"} 1.0\n\
                  # HELP x_mem Memory.\n# TYPE x_mem gauge\n# UNIT x_mem bytes\nx_mem 5\n\
                  # HELP x_thing Thing.\n# TYPE x_thing unknown\nx_thing 2\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP x_restarts_total Restarts \"of\" it.\n# TYPE x_restarts_total counter\n\
             x_restarts_total{d=\"a\"} 1\n\
             # HELP x_mem Memory.\n# TYPE x_mem gauge\nx_mem 5\n\
             # HELP x_thing Thing.\n# TYPE x_thing untyped\nx_thing 2\n"
        );
    }

    #[test]
    fn histograms_pass_unchanged() {
        let om = "# HELP h Latency.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.05\nh_count 1\n# EOF\n";
        assert_eq!(to_text_004(om), om.trim_end_matches("# EOF\n"));
    }
}
