//! A strict-enough parser of the Prometheus / OpenMetrics text format, so tests can check
//! that `/metrics` parses and holds the metrics it should.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A metric family: its `# TYPE` and its samples.
#[derive(Debug, Clone, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// Parses the exposition; `Err` names the first bad line.
pub fn parse_metrics(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut eof = false;
    for (n, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if eof {
            return Err(at("text after # EOF"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, value) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            let name = name.ok_or_else(|| at("a # line without a metric name"))?;
            if !valid_name(name) {
                return Err(at("bad metric name"));
            }
            let fam = families.entry(name.to_string()).or_default();
            match kw {
                Some("TYPE") => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "unknown",
                        "info",
                        "stateset",
                        "gaugehistogram",
                    ];
                    if !known.contains(&value) {
                        return Err(at("unknown type"));
                    }
                    fam.kind = value.to_string();
                }
                Some("HELP") => fam.help = value.to_string(),
                Some("UNIT") => {}
                _ => return Err(at("unknown # line")),
            }
            continue;
        }
        if line.trim().is_empty() {
            return Err(at("empty line"));
        }
        let sample = parse_sample(line).map_err(|e| at(&e))?;
        let family = family_of(&sample.name, &families)
            .ok_or_else(|| at("sample of a family without # TYPE"))?;
        families
            .get_mut(&family)
            .map(|f| f.samples.push(sample))
            .ok_or_else(|| at("unknown family"))?;
    }
    Ok(families)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to (`x_total` to counter `x`, `x_bucket` to histogram `x`).
fn family_of(sample: &str, families: &BTreeMap<String, Family>) -> Option<String> {
    if families.get(sample).is_some_and(|f| !f.kind.is_empty()) {
        return Some(sample.to_string());
    }
    for suffix in ["_total", "_created", "_bucket", "_sum", "_count", "_info"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if families.get(base).is_some_and(|f| !f.kind.is_empty()) {
                return Some(base.to_string());
            }
        }
    }
    None
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("bad metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end;
        loop {
            // label name
            let start = match chars.peek() {
                Some((_, '}')) => {
                    end = chars.next().map(|(i, _)| i);
                    break;
                }
                Some((i, _)) => *i,
                None => return Err("unterminated labels".into()),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.ok_or("label without =")?;
            let lname = &inner[start..eq];
            if !valid_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        _ => return Err("bad escape in a label value".into()),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err("unterminated label value".into());
            }
            labels.insert(lname.to_string(), value);
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    end = Some(i);
                    break;
                }
                _ => return Err("expected , or } after a label".into()),
            }
        }
        let end = end.ok_or("unterminated labels")?;
        rest = &inner[end + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<f64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("extra fields after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// What Prometheus 2.x sends: OpenMetrics first, the text format as a fallback.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The agent's `/metrics` as Prometheus asks for it, checked to be OpenMetrics and parsed.
pub fn scrape_metrics(agent: &crate::Agent) -> BTreeMap<String, Family> {
    let answer = crate::http_get_with(
        &agent.http_url("/metrics"),
        &[("Accept", PROMETHEUS_ACCEPT)],
    )
    .expect("/metrics answers");
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.body;
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF: {body}"
    );
    parse_metrics(&body).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"))
}

impl Family {
    /// The value of its sample `name` whose label `label.0` is `label.1`.
    pub fn value(&self, name: &str, label: (&str, &str)) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.get(label.0).map(String::as_str) == Some(label.1))
            .map(|s| s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_gauges_histograms() {
        let text = "# HELP a_restarts Restarts.\n# TYPE a_restarts counter\na_restarts_total{deployment=\"x\"} 2\n# TYPE a_lat histogram\na_lat_bucket{le=\"0.1\"} 1\na_lat_bucket{le=\"+Inf\"} 1\na_lat_sum 0.05\na_lat_count 1\n# EOF\n";
        let f = parse_metrics(text).unwrap();
        assert_eq!(f["a_restarts"].samples[0].value, 2.0);
        assert_eq!(f["a_lat"].samples.len(), 4);
        assert_eq!(f["a_lat"].samples[1].labels["le"], "+Inf");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_metrics("# TYPE a gauge\na{x=1} 2\n").is_err());
        assert!(parse_metrics("b 1\n").is_err());
        assert!(parse_metrics("# TYPE a gauge\na one\n").is_err());
        assert!(parse_metrics("# EOF\n# TYPE a gauge\n").is_err());
    }
}
