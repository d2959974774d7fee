//! `routes.json`: the proxy's routes, written at every change, so a proxy started again
//! serves at once. A file that is damaged (a write cut short by a full disk, a hand edit)
//! gives what can be read of it; what cannot be read is said in the proxy's log, and the
//! agent sends every route again as soon as the proxy answers.

use std::path::Path;

use serde::Deserialize;

use super::table::RouteSpec;

/// The routes in `file` that can be read (none when it is missing); the rest is logged.
pub(super) async fn load(file: &Path) -> Vec<RouteSpec> {
    let bytes = match tokio::fs::read(file).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot read the routes file: starting without its routes (the agent sends them)");
            return Vec::new();
        }
    };
    let (routes, problems) = parse(&bytes);
    for problem in &problems {
        tracing::error!(file = %file.display(), "could not read part of the routes file: {problem}; serving the {} routes it could read (the agent sends every route again)", routes.len());
    }
    routes
}

/// Every route of the file's JSON array that reads, and what did not.
pub(super) fn parse(bytes: &[u8]) -> (Vec<RouteSpec>, Vec<String>) {
    let (mut routes, mut problems) = (Vec::new(), Vec::new());
    let values = match serde_json::from_slice::<Vec<serde_json::Value>>(bytes) {
        Ok(values) => values,
        Err(whole) => {
            let (values, problem) = salvage(bytes);
            problems.push(problem.unwrap_or_else(|| format!("not a JSON array: {whole}")));
            values
        }
    };
    for (i, value) in values.into_iter().enumerate() {
        match RouteSpec::deserialize(&value) {
            Ok(route) => routes.push(route),
            Err(e) => problems.push(format!("route {} is not a route: {e}", i + 1)),
        }
    }
    (routes, problems)
}

/// The whole elements at the start of a damaged array (a file cut short), and where
/// reading stopped.
fn salvage(bytes: &[u8]) -> (Vec<serde_json::Value>, Option<String>) {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return (Vec::new(), Some("the file is empty".into()));
    }
    let Some(mut rest) = trimmed.strip_prefix('[') else {
        return (Vec::new(), None);
    };
    let mut values = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.starts_with(']') {
            return (values, None);
        }
        let read = text.len() - rest.len();
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(v)) => {
                values.push(v);
                rest = &rest[stream.byte_offset()..];
            }
            Some(Err(e)) => return (values, Some(format!("unreadable from byte {read}: {e}"))),
            None => return (values, Some(format!("cut short at byte {read}"))),
        }
    }
}

/// Writes `routes` to `file` atomically (on a blocking thread).
pub(super) async fn write(file: &Path, routes: &[RouteSpec]) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(routes).map_err(|e| e.to_string())?;
    let file = file.to_path_buf();
    tokio::task::spawn_blocking(move || crate::fsmode::write_atomic(&file, &json))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"{"listen":"127.0.0.1:8000","mode":"http","backends":[{"addr":"127.0.0.1:9000","release":2}],"hold_timeout_ms":5,"generation":4}"#;
    const TWO: &str =
        r#"{"listen":"127.0.0.1:8001","mode":"tcp","backends":[],"hold_timeout_ms":5}"#;

    #[test]
    fn a_whole_file_reads_whole() {
        let (routes, problems) = parse(format!("[{ONE},\n{TWO}]").as_bytes());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].generation, 4);
        assert_eq!(routes[1].generation, 0, "files of before generations");
    }

    #[test]
    fn a_file_cut_short_gives_its_whole_routes() {
        let full = format!("[\n  {ONE},\n  {TWO}\n]");
        let cut = &full[..full.len() - 20];
        let (routes, problems) = parse(cut.as_bytes());
        assert_eq!(routes.len(), 1, "{problems:?}");
        assert_eq!(routes[0].listen.port(), 8000);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("byte"), "{problems:?}");
    }

    #[test]
    fn a_bad_route_is_skipped_and_named() {
        let (routes, problems) =
            parse(format!(r#"[{ONE}, {{"listen":"nowhere"}}, {TWO}]"#).as_bytes());
        assert_eq!(routes.len(), 2);
        assert!(
            problems[0].starts_with("route 2 is not a route"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_empty_or_foreign_file_gives_nothing_and_says_why() {
        let (routes, problems) = parse(b"");
        assert!(routes.is_empty());
        assert_eq!(problems, ["the file is empty"]);
        let (routes, problems) = parse(b"\0\0\0\0");
        assert!(routes.is_empty());
        assert!(problems[0].starts_with("not a JSON array"), "{problems:?}");
    }
}
