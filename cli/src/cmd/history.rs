//! `history NAME`: its deploys, newest last: number, time, ref, commit, packages hash,
//! result. The current one (the last that worked) is marked with `*`.

use serde_json::json;

use crate::decl;
use crate::output::{self, Format};
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The deployment whose releases to list
    pub name: String,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    decl::validate_name("name", &args.name)?;
    // Deploys whose result was not known get the agents' outcome, when they answer.
    super::fresh::reconcile_unknown(project, &args.name, format).await?;
    let d = state::find(project, &args.name).await?;
    let current = d
        .history
        .iter()
        .rev()
        .find(|h| h.result == "ok")
        .map(|h| h.number);
    if format == Format::Json {
        let list: Vec<_> = d
            .history
            .iter()
            .map(|h| {
                json!({
                    "number": h.number, "time": h.time, "ref": h.git_ref, "commit": h.commit,
                    "packages_hash": h.packages_hash, "result": h.result,
                    "current": Some(h.number) == current, "agents": h.agents,
                    "frozen": h.frozen, "note": h.note,
                })
            })
            .collect();
        println!("{}", json!({"name": args.name, "releases": list}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = d
        .history
        .iter()
        .map(|h| {
            let mark = if Some(h.number) == current { "*" } else { "" };
            vec![
                format!("{}{mark}", h.number),
                time_text(h.time),
                h.git_ref.clone(),
                crate::output::short_commit(&h.commit).to_string(),
                if h.packages_hash.is_empty() {
                    "-".into()
                } else {
                    h.packages_hash.clone()
                },
                h.result.clone(),
                h.note.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "#",
            "TIME (UTC)",
            "REF",
            "COMMIT",
            "PACKAGES",
            "RESULT",
            "CHANGE",
        ],
        &rows,
    );
    Ok(())
}

/// Unix seconds as `2026-11-23 16:40:01`.
pub(crate) fn time_text(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}
