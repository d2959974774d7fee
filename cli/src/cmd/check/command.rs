//! The command: a `cd` (the workdir is the way to run elsewhere), and a literal port (the
//! app must listen on `$HOST:$PORT`, which is private behind the node proxy).

use std::sync::LazyLock;

use regex::Regex;

use super::Finding;
use crate::decl::DeploymentDecl;

static CD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[;&|(]|\s)cd\s+([^\s;&|)]+)")
        .unwrap_or_else(|e| unreachable!("the cd pattern is valid: {e}"))
});

/// A port written into the command: after a port flag, after `HOST:`, or as
/// `http.server`'s argument.
static PORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?x)
        (?:--(?:server\.)?port|--http-port|--listen-port|\s-p|PORT)[=\s]+["']?(\d{2,5})\b
        | (?:^|[\s="'])(?:[\w.\[\]-]*|\$\{?HOST\}?):(\d{2,5})\b
        | http\.server\s+(\d{2,5})\b
        "#,
    )
    .unwrap_or_else(|e| unreachable!("the port pattern is valid: {e}"))
});

pub(super) fn findings(d: &DeploymentDecl) -> Vec<Finding> {
    let mut out = Vec::new();
    let cmd = d.command.as_str();
    if let Some(c) = CD.captures(cmd) {
        let dir = c[1].to_string();
        out.push(Finding::warning(
            "cd-in-command",
            format!(
                "the command changes directory (cd {dir}): the app then runs outside its workdir, and relative paths and imports differ from what the deploy checks"
            ),
            format!("set the directory with --workdir {dir} and drop the cd from --command"),
        ));
    }
    let declared = d.port.unwrap_or(8000);
    let recreate = d.strategy.as_deref() == Some("recreate");
    for c in PORT.captures_iter(cmd) {
        let Some(port) = c
            .iter()
            .skip(1)
            .flatten()
            .next()
            .and_then(|m| m.as_str().parse::<i64>().ok())
        else {
            continue;
        };
        if port == declared && recreate {
            continue; // recreate: the app binds the deployment's port itself
        }
        let message = if port == declared {
            format!(
                "the command binds port {port} itself, but the node proxy holds the deployment's port {declared} and hands the app a private one in $PORT: the start fails with \"address in use\" or is never healthy"
            )
        } else {
            format!(
                "the command names port {port}, but the deployment's port is {declared} and the app is told where to listen in $HOST:$PORT: it will not be found listening"
            )
        };
        out.push(Finding::warning(
            "literal-port",
            message,
            format!(
                "write $PORT (and $HOST) in the command instead of {port}, e.g. --port $PORT --host $HOST"
            ),
        ));
        break;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(command: &str, port: Option<i64>) -> Vec<&'static str> {
        let d = DeploymentDecl {
            command: command.into(),
            port,
            ..Default::default()
        };
        findings(&d).into_iter().map(|f| f.check).collect()
    }

    #[test]
    fn cd_and_ports() {
        assert_eq!(
            found("cd src && python app.py", None),
            vec!["cd-in-command"]
        );
        assert!(found("python app.py --cdn x", None).is_empty());
        assert_eq!(
            found("uvicorn app:app --port 8080", None),
            vec!["literal-port"]
        );
        assert_eq!(
            found("gunicorn -b 0.0.0.0:9000 app:app", None),
            vec!["literal-port"]
        );
        assert_eq!(
            found("gunicorn -b $HOST:8000 app:app", None),
            vec!["literal-port"]
        );
        assert_eq!(
            found("python -m http.server 8001", None),
            vec!["literal-port"]
        );
        assert!(found("uvicorn app:app --host $HOST --port $PORT", None).is_empty());
        assert!(found(
            "mlflow server --backend-store-uri postgresql://db:5432/x --port $PORT",
            None
        )
        .is_empty());
        assert!(found("python app.py --workers 4 --timeout 120", None).is_empty());
        let recreate = DeploymentDecl {
            command: "python app.py --port 9000".into(),
            port: Some(9000),
            strategy: Some("recreate".into()),
            ..Default::default()
        };
        assert!(findings(&recreate).is_empty());
    }
}
