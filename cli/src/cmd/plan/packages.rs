//! What a plan says of a release's packages: which the new declaration adds, removes or
//! changes against the versions the running release has installed.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The distribution a pip argument names (lower-case, `-` for runs of `-_.`).
fn dist_name(p: &str) -> String {
    let n: String = p
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let mut out = String::new();
    for c in n.to_lowercase().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Declared packages added, removed and changed, with the versions the running release has.
pub(super) fn packages_diff(old: &[String], frozen: &[String], new: &[String]) -> Value {
    let installed: BTreeMap<String, String> = frozen
        .iter()
        .filter_map(|l| l.split_once("=="))
        .map(|(n, v)| (dist_name(n), v.trim().to_string()))
        .collect();
    let by_name = |list: &[String]| -> BTreeMap<String, String> {
        list.iter()
            .map(|p| (dist_name(p), p.trim().to_string()))
            .collect()
    };
    let (old, new) = (by_name(old), by_name(new));
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut changed = Vec::new();
    for (n, spec) in &new {
        match old.get(n) {
            None => added.push(json!({"name": n, "declared": spec,
                                      "installed": installed.get(n)})),
            Some(o) if o != spec => changed.push(json!({"name": n, "from": o, "to": spec,
                                                        "installed": installed.get(n)})),
            Some(_) => {}
        }
    }
    for (n, spec) in &old {
        if !new.contains_key(n) {
            removed.push(json!({"name": n, "declared": spec, "installed": installed.get(n)}));
        }
    }
    json!({"added": added, "removed": removed, "changed": changed})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_differences_name_the_installed_versions() {
        let d = packages_diff(
            &["numpy".into(), "requests".into()],
            &[
                "numpy==1.26.4".into(),
                "requests==2.31.0".into(),
                "pandas==2.2.0".into(),
            ],
            &["numpy==2.1.0".into(), "Pandas".into()],
        );
        assert_eq!(d["added"][0]["name"], "pandas");
        assert_eq!(d["added"][0]["installed"], "2.2.0");
        assert_eq!(d["removed"][0]["name"], "requests");
        assert_eq!(d["changed"][0]["from"], "numpy");
        assert_eq!(d["changed"][0]["to"], "numpy==2.1.0");
    }
}
