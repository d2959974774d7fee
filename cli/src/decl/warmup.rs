//! `warmup:` in a declaration: requests sent to each instance of a new release once it is
//! ready and before traffic moves to it. `--warmup 'POST /predict {"rows": [[1, 2]]}'`
//! sets one from the command line (repeatable).

use deployctl_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Warmup {
    /// GET (default), POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Starts with '/'.
    pub path: String,
    /// Sent as it is: text, or YAML that is sent as JSON (`body: {rows: [[1, 2]]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
}

/// A warm-up's body as a declaration writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Body {
    Text(String),
    Json(serde_json::Value),
}

impl Body {
    fn text(&self) -> String {
        match self {
            Body::Text(t) => t.clone(),
            Body::Json(v) => v.to_string(),
        }
    }
}

impl Warmup {
    fn method(&self) -> String {
        self.method
            .as_deref()
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "GET".into())
    }

    pub(crate) fn to_pb(&self) -> pb::WarmupRequest {
        pb::WarmupRequest {
            method: self.method(),
            path: self.path.trim().to_string(),
            body: self.body.as_ref().map(Body::text).unwrap_or_default(),
        }
    }

    pub(crate) fn from_pb(w: &pb::WarmupRequest) -> Warmup {
        Warmup {
            method: Some(w.method.clone()).filter(|m| !m.is_empty() && m != "GET"),
            path: w.path.clone(),
            body: Some(Body::Text(w.body.clone())).filter(|_| !w.body.is_empty()),
        }
    }

    /// `--warmup 'METHOD PATH [BODY]'`.
    pub(crate) fn parse_flag(v: &str) -> anyhow::Result<Warmup> {
        let v = v.trim();
        let (method, rest) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
        let rest = rest.trim_start();
        let (path, body) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let w = Warmup {
            method: Some(method.to_ascii_uppercase()),
            path: path.to_string(),
            body: Some(Body::Text(body.trim().to_string())).filter(|_| !body.trim().is_empty()),
        };
        w.validate(0).map_err(|e| {
            bad_input(format!(
                "--warmup: {v:?} is not METHOD PATH [BODY], e.g. 'POST /predict {{\"rows\": [[1, 2]]}}' ({e})"
            ))
        })?;
        Ok(w)
    }

    /// Checks entry `i` as the agent will; the error names the field.
    fn validate(&self, i: usize) -> anyhow::Result<()> {
        let method = self.method();
        if !METHODS.contains(&method.as_str()) {
            return Err(bad_input(format!(
                "warmup[{i}].method: {method:?} is not one of {}",
                METHODS.join(", ")
            )));
        }
        let path = self.path.trim();
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err(bad_input(format!(
                "warmup[{i}].path: {path:?} must start with '/' and have no spaces"
            )));
        }
        Ok(())
    }
}

/// Checks every entry.
pub(crate) fn validate(all: &[Warmup]) -> anyhow::Result<()> {
    all.iter().enumerate().try_for_each(|(i, w)| w.validate(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_is_method_path_and_body() {
        let w = Warmup::parse_flag(r#"post /predict {"rows": [[5.1, 3.5]]}"#).unwrap();
        assert_eq!(w.to_pb().method, "POST");
        assert_eq!(w.to_pb().path, "/predict");
        assert_eq!(w.to_pb().body, r#"{"rows": [[5.1, 3.5]]}"#);
        assert_eq!(Warmup::parse_flag("GET /").unwrap().to_pb().body, "");
        assert!(Warmup::parse_flag("FETCH /").is_err());
        assert!(Warmup::parse_flag("GET predict").is_err());
    }

    #[test]
    fn a_yaml_body_is_sent_as_json() {
        let w: Warmup =
            serde_norway::from_str("{method: POST, path: /predict, body: {rows: [[1, 2]]}}")
                .unwrap();
        assert_eq!(w.to_pb().body, r#"{"rows":[[1,2]]}"#);
        let w: Warmup =
            serde_norway::from_str(r#"{method: POST, path: /p, body: '{"a": 1}'}"#).unwrap();
        assert_eq!(w.to_pb().body, r#"{"a": 1}"#);
        let e = serde_norway::from_str::<Warmup>("{path: /p, bogus: 1}").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
