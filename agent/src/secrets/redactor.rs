//! Hiding secret values in what leaves the agent: deploy output, failure tails, logs.

/// Replaces secret values in text that leaves the agent (output lines, failure tails, logs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    values: Vec<String>,
}

/// Values shorter than this are not redacted (they would blank out ordinary words).
const MIN_REDACTED: usize = 4;

impl Redactor {
    pub(crate) fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values
            .into_iter()
            .flat_map(|v| {
                // A multi-line value (a key) may leak line by line.
                let mut parts: Vec<String> = v.lines().map(|l| l.trim().to_string()).collect();
                parts.push(v.trim().to_string());
                parts
            })
            .filter(|v| v.len() >= MIN_REDACTED)
            .collect();
        // Longest first, so a value that contains another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(crate) fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "[redacted]");
            }
        }
        out
    }

    pub(crate) fn bytes(&self, b: Vec<u8>) -> Vec<u8> {
        if self.values.is_empty() {
            return b;
        }
        self.text(&String::from_utf8_lossy(&b)).into_bytes()
    }
}
