//! `artifacts`: model and data files that do not belong in git, named by URL, pinned by
//! their SHA-256 and linked read-only at a path of the workdir ([`crate::artifacts`] keeps
//! them). Every refusal names the entry (`artifacts[1].sha256`) and why.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::fields::invalid;
use super::{validate_relative_path, MAX_TEXT};
use crate::error::Error;

/// The most artifacts one deployment may declare.
pub(crate) const MAX_ARTIFACTS: usize = 64;

/// One validated artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Artifact {
    /// https://, http:// or file:// (an absolute path on the node).
    pub url: String,
    /// 64 lowercase hex digits; `None`: unpinned (only with `allow_unpinned_artifacts`).
    /// A release's record keeps the hash its deploy found, so what it ran is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the release gets it, relative to the workdir, never leaving it.
    pub path: PathBuf,
    /// An archive unpacked to a directory at `path`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extract: bool,
}

/// An artifact as the request has it (mirrors the proto message).
#[derive(Debug, Default, Clone)]
pub(crate) struct RawArtifact {
    pub url: String,
    pub sha256: String,
    pub path: String,
    pub extract: bool,
}

impl Artifact {
    /// The URL as messages show it: without its query (a presigned URL's signature is a
    /// credential) and without a password.
    pub(crate) fn shown_url(&self) -> String {
        shown_url(&self.url)
    }
}

/// `url` without its query and password, for messages and logs.
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            u.set_query(None);
            let _ = u.set_password(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => url.to_string(),
    }
}

/// Checks every entry: its URL, hash and path; paths may not repeat or lie inside one
/// another. An entry without a hash is refused unless `allow_unpinned`.
pub(crate) fn validate(raw: &[RawArtifact], allow_unpinned: bool) -> Result<Vec<Artifact>, Error> {
    if raw.len() > MAX_ARTIFACTS {
        return Err(invalid(
            "artifacts",
            format!("{} entries is more than {MAX_ARTIFACTS}", raw.len()),
        ));
    }
    let mut out: Vec<Artifact> = Vec::with_capacity(raw.len());
    for (i, a) in raw.iter().enumerate() {
        let field = |name: &str| format!("artifacts[{i}].{name}");
        let url = url_of(&field("url"), a.url.trim())?;
        let sha256 = sha256_of(&field("sha256"), &a.sha256, allow_unpinned)?;
        let path = validate_relative_path(&field("path"), a.path.trim())?;
        if path.as_os_str().is_empty() {
            return Err(invalid(
                &field("path"),
                "is required: where the release gets the file, relative to the workdir (e.g. models/model.pkl)",
            ));
        }
        if let Some((j, other)) = out
            .iter()
            .enumerate()
            .find(|(_, o)| o.path.starts_with(&path) || path.starts_with(&o.path))
        {
            return Err(invalid(
                &field("path"),
                format!(
                    "{} overlaps artifacts[{j}].path {}: each artifact needs a place of its own",
                    path.display(),
                    other.path.display()
                ),
            ));
        }
        out.push(Artifact {
            url,
            sha256,
            path,
            extract: a.extract,
        });
    }
    Ok(out)
}

fn url_of(field: &str, raw: &str) -> Result<String, Error> {
    if raw.is_empty() {
        return Err(invalid(field, "is required (https://, http:// or file://)"));
    }
    if raw.len() > MAX_TEXT || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            field,
            "is too long or has spaces or control characters",
        ));
    }
    if raw.starts_with("s3://") {
        return Err(invalid(
            field,
            format!("{}: s3:// artifacts are not supported yet; give an https:// URL (a presigned one for a private bucket) or a file:// path on the node", shown_url(raw)),
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| invalid(field, format!("{:?} is not a URL: {e}", shown_url(raw))))?;
    if url.fragment().is_some() {
        return Err(invalid(
            field,
            format!(
                "{} has a fragment (#...); give the hash as sha256",
                shown_url(raw)
            ),
        ));
    }
    match url.scheme() {
        "https" | "http" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(raw.to_string()),
        "file" if matches!(url.host_str(), None | Some("") | Some("localhost")) => {
            match url.to_file_path() {
                Ok(p) if p.is_absolute() && !p.as_os_str().is_empty() => Ok(raw.to_string()),
                _ => Err(invalid(
                    field,
                    format!("{raw:?} is not a file:// URL of an absolute path"),
                )),
            }
        }
        "file" => Err(invalid(
            field,
            format!("{raw:?}: a file:// URL names a file on the node itself (file:///path), not on another host"),
        )),
        _ => Err(invalid(
            field,
            format!(
                "{} is not an https://, http:// or file:// URL",
                shown_url(raw)
            ),
        )),
    }
}

fn sha256_of(field: &str, raw: &str, allow_unpinned: bool) -> Result<Option<String>, Error> {
    let hex = raw.trim();
    let hex = hex
        .strip_prefix("sha256:")
        .unwrap_or(hex)
        .to_ascii_lowercase();
    if hex.is_empty() {
        return if allow_unpinned {
            Ok(None)
        } else {
            Err(invalid(
                field,
                "is required: the file's SHA-256, 64 hex digits (sha256sum FILE); to deploy an unpinned artifact while developing, run with --allow-unpinned",
            ))
        };
    }
    if !is_sha256(&hex) {
        return Err(invalid(
            field,
            format!("{raw:?} is not a SHA-256: 64 hex digits (sha256sum FILE)"),
        ));
    }
    Ok(Some(hex))
}

/// 64 lowercase hex digits.
pub(crate) fn is_sha256(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn raw(url: &str, sha: &str, path: &str) -> RawArtifact {
        RawArtifact {
            url: url.into(),
            sha256: sha.into(),
            path: path.into(),
            extract: false,
        }
    }

    fn refusal(list: &[RawArtifact], unpinned: bool) -> String {
        validate(list, unpinned).unwrap_err().to_string()
    }

    #[test]
    fn a_pinned_artifact_is_accepted() {
        let a = validate(
            &[raw(
                "https://m.example/iris/model.pkl",
                &HEX.to_uppercase(),
                "./models/model.pkl",
            )],
            false,
        )
        .unwrap();
        assert_eq!(a[0].sha256.as_deref(), Some(HEX));
        assert_eq!(a[0].path, PathBuf::from("models/model.pkl"));
        let f = validate(&[raw("file:///srv/m.pkl", HEX, "m.pkl")], false).unwrap();
        assert_eq!(f[0].url, "file:///srv/m.pkl");
    }

    #[test]
    fn refusals_name_the_entry_and_why() {
        let e = refusal(&[raw("https://m.example/a", "", "a")], false);
        assert!(
            e.starts_with("artifacts[0].sha256: is required") && e.contains("--allow-unpinned"),
            "{e}"
        );
        assert!(
            validate(&[raw("https://m.example/a", "", "a")], true).unwrap()[0]
                .sha256
                .is_none()
        );
        let e = refusal(&[raw("https://m.example/a", "abc", "a")], false);
        assert!(e.starts_with("artifacts[0].sha256:"), "{e}");
        let e = refusal(&[raw("s3://bucket/key", HEX, "a")], false);
        assert!(e.contains("s3:// artifacts are not supported yet"), "{e}");
        let e = refusal(&[raw("ftp://h/a", HEX, "a")], false);
        assert!(e.starts_with("artifacts[0].url:"), "{e}");
        let e = refusal(&[raw("file://other/a", HEX, "a")], false);
        assert!(e.starts_with("artifacts[0].url:"), "{e}");
        let e = refusal(&[raw("https://h/a", HEX, "../a")], false);
        assert!(
            e.starts_with("artifacts[0].path:") && e.contains(".."),
            "{e}"
        );
        let e = refusal(&[raw("https://h/a", HEX, "/etc/a")], false);
        assert!(e.starts_with("artifacts[0].path:"), "{e}");
        let e = refusal(&[raw("https://h/a", HEX, ".")], false);
        assert!(e.starts_with("artifacts[0].path: is required"), "{e}");
        let e = refusal(
            &[
                raw("https://h/a", HEX, "models"),
                raw("https://h/b", HEX, "models/b"),
            ],
            false,
        );
        assert!(
            e.starts_with("artifacts[1].path:") && e.contains("overlaps"),
            "{e}"
        );
    }

    #[test]
    fn a_presigned_url_is_shown_without_its_signature() {
        assert_eq!(
            shown_url("https://u:pw@b.example/m.pkl?X-Amz-Signature=secret"),
            "https://u@b.example/m.pkl?…"
        );
    }
}
