//! `artifacts:` in a declaration: model and data files that do not belong in git, each a
//! URL pinned by its sha256 and the path (relative to the workdir) the release gets it at,
//! read-only; `extract: true` unpacks an archive to a directory there. `--artifact
//! PATH=URL#sha256=HEX` sets one from the command line.

use std::path::{Component, Path};

use deployctl_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Artifact {
    /// https://, http:// or file:// (s3:// not yet).
    pub url: String,
    /// The file's SHA-256 (64 hex digits); without it `run` needs --allow-unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the release gets it, relative to the workdir.
    pub path: String,
    /// An archive (.tar.gz, .tar.zst, .zip) unpacked to a directory at `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
}

impl Artifact {
    /// Whether it has no sha256 (each deploy downloads it again, unverified).
    pub(crate) fn unpinned(&self) -> bool {
        self.sha256.as_deref().is_none_or(|s| s.trim().is_empty())
    }

    /// The URL without its query (a presigned URL's signature), for messages.
    pub(crate) fn shown_url(&self) -> String {
        match self.url.split_once('?') {
            Some((base, _)) => format!("{base}?…"),
            None => self.url.clone(),
        }
    }

    /// Checks entry `i` as the agent will; the error names the field.
    fn validate(&self, i: usize) -> anyhow::Result<()> {
        let field = |f: &str| format!("artifacts[{i}].{f}");
        let url = self.url.trim();
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "https" | "http" | "file" => {}
            "s3" => {
                return Err(bad_input(format!(
                    "{}: {url}: s3:// artifacts are not supported yet; give an https:// URL (a presigned one for a private bucket) or a file:// path on the node",
                    field("url")
                )))
            }
            _ => {
                return Err(bad_input(format!(
                    "{}: {:?} is not an https://, http:// or file:// URL",
                    field("url"),
                    self.shown_url()
                )))
            }
        }
        if url.contains(char::is_whitespace) || url.contains('#') {
            return Err(bad_input(format!(
                "{}: {:?} has spaces or a fragment (#...); give the hash as sha256",
                field("url"),
                self.shown_url()
            )));
        }
        if let Some(s) = self
            .sha256
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let hex = s.strip_prefix("sha256:").unwrap_or(s);
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad_input(format!(
                    "{}: {s:?} is not a SHA-256: 64 hex digits (sha256sum FILE)",
                    field("sha256")
                )));
            }
        }
        let path = Path::new(self.path.trim());
        let mut normal = 0;
        for c in path.components() {
            match c {
                Component::Normal(_) => normal += 1,
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(bad_input(format!(
                        "{}: {:?} leaves the workdir ('..' is not allowed)",
                        field("path"),
                        self.path
                    )))
                }
                _ => {
                    return Err(bad_input(format!(
                        "{}: {:?} is absolute; give a path relative to the workdir",
                        field("path"),
                        self.path
                    )))
                }
            }
        }
        if normal == 0 {
            return Err(bad_input(format!(
                "{}: is required: where the release gets the file, relative to the workdir (e.g. models/model.pkl)",
                field("path")
            )));
        }
        Ok(())
    }

    pub(crate) fn to_pb(&self) -> pb::Artifact {
        pb::Artifact {
            url: self.url.trim().to_string(),
            sha256: {
                let s = self.sha256.as_deref().unwrap_or_default().trim();
                s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase()
            },
            path: self.path.trim().to_string(),
            extract: self.extract.unwrap_or(false),
        }
    }

    pub(crate) fn from_pb(a: &pb::Artifact) -> Artifact {
        Artifact {
            url: a.url.clone(),
            sha256: (!a.sha256.is_empty()).then(|| a.sha256.clone()),
            path: a.path.clone(),
            extract: a.extract.then_some(true),
        }
    }

    /// `--artifact PATH=URL[#sha256=HEX][&extract]`.
    pub(crate) fn parse_flag(text: &str) -> anyhow::Result<Artifact> {
        let usage = "write PATH=URL#sha256=HEX (add &extract to unpack an archive), e.g. --artifact models/model.pkl=https://example.org/model.pkl#sha256=9f86...";
        let (path, rest) = text
            .split_once('=')
            .ok_or_else(|| bad_input(format!("--artifact: {text:?}: {usage}")))?;
        let (url, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let mut a = Artifact {
            url: url.to_string(),
            path: path.to_string(),
            ..Default::default()
        };
        for part in fragment.split('&').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("sha256", hex)) => a.sha256 = Some(hex.to_string()),
                None if part == "extract" => a.extract = Some(true),
                Some(("extract", v)) if matches!(v, "true" | "false") => {
                    a.extract = Some(v == "true")
                }
                _ => {
                    return Err(bad_input(format!(
                        "--artifact: {part:?} after '#' is not sha256=HEX or extract; {usage}"
                    )))
                }
            }
        }
        if a.url.is_empty() || a.path.is_empty() {
            return Err(bad_input(format!("--artifact: {text:?}: {usage}")));
        }
        Ok(a)
    }
}

/// Every entry checked; paths may not repeat or lie inside one another.
pub(crate) fn validate(list: &[Artifact]) -> anyhow::Result<()> {
    let clean = |p: &str| crate::decl::normalize(Path::new(p.trim()));
    for (i, a) in list.iter().enumerate() {
        a.validate(i)?;
        let path = clean(&a.path);
        if let Some(j) = list[..i].iter().position(|o| {
            let other = clean(&o.path);
            other.starts_with(&path) || path.starts_with(&other)
        }) {
            return Err(bad_input(format!(
                "artifacts[{i}].path: {} overlaps artifacts[{j}].path {}: each artifact needs a place of its own",
                a.path, list[j].path
            )));
        }
    }
    Ok(())
}

/// `--artifact` flags laid over the declaration's list: one with a path already listed
/// replaces that entry, others are added.
pub(crate) fn merge(list: &mut Vec<Artifact>, given: &[String]) -> anyhow::Result<()> {
    for text in given {
        let a = Artifact::parse_flag(text)?;
        let same = |o: &&mut Artifact| {
            crate::decl::normalize(Path::new(o.path.trim()))
                == crate::decl::normalize(Path::new(a.path.trim()))
        };
        match list.iter_mut().find(same) {
            Some(existing) => *existing = a,
            None => list.push(a),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_flag_reads_path_url_hash_and_extract() {
        let a = Artifact::parse_flag(&format!(
            "models/iris=https://m.example/iris.tar.gz?v=1#sha256={HEX}&extract"
        ))
        .unwrap();
        assert_eq!(a.path, "models/iris");
        assert_eq!(a.url, "https://m.example/iris.tar.gz?v=1");
        assert_eq!(a.sha256.as_deref(), Some(HEX));
        assert_eq!(a.extract, Some(true));
        let unpinned = Artifact::parse_flag("m.pkl=file:///srv/m.pkl").unwrap();
        assert!(unpinned.unpinned() && unpinned.extract.is_none());
        assert!(Artifact::parse_flag("https://m.example/m.pkl").is_err());
        assert!(Artifact::parse_flag("m=https://h/m#md5=1").is_err());
    }

    #[test]
    fn a_flag_replaces_the_entry_of_its_path() {
        let mut list = vec![Artifact {
            url: "https://h/old.pkl".into(),
            sha256: Some(HEX.into()),
            path: "models/model.pkl".into(),
            extract: None,
        }];
        merge(
            &mut list,
            &[
                format!("./models/model.pkl=https://h/new.pkl#sha256={HEX}"),
                format!("tok.json=https://h/tok.json#sha256={HEX}"),
            ],
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].url, "https://h/new.pkl");
    }

    #[test]
    fn refusals_name_the_entry() {
        let a = |url: &str, sha: Option<&str>, path: &str| Artifact {
            url: url.into(),
            sha256: sha.map(str::to_string),
            path: path.into(),
            extract: None,
        };
        let e = |list: &[Artifact]| validate(list).unwrap_err().to_string();
        assert!(
            e(&[a("s3://b/k", Some(HEX), "m")]).contains("s3:// artifacts are not supported yet")
        );
        assert!(e(&[a("ftp://h/k", Some(HEX), "m")]).starts_with("artifacts[0].url:"));
        assert!(e(&[a("https://h/k", Some("12"), "m")]).starts_with("artifacts[0].sha256:"));
        assert!(e(&[a("https://h/k", Some(HEX), "../m")]).starts_with("artifacts[0].path:"));
        assert!(e(&[a("https://h/k", Some(HEX), "/m")]).starts_with("artifacts[0].path:"));
        assert!(e(&[
            a("https://h/k", Some(HEX), "m"),
            a("https://h/l", None, "m/x")
        ])
        .starts_with("artifacts[1].path:"));
        assert!(
            validate(&[a("https://h/k", None, "m")]).is_ok(),
            "run decides about unpinned"
        );
    }
}
