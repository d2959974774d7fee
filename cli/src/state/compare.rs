//! How a deployment's record in one state compares with its record in another: what
//! `state copy` does with it and what `config set core.state.uri` tells about it.

use super::DeploymentState;

/// The target's record of a deployment, seen from the source's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fit {
    /// The target has no record of it: copied.
    Missing,
    /// The same record: skipped.
    Same,
    /// The target's history has the source's whole history, and `more` releases after it
    /// (deployed since with the target as the state; its instances may be fresher too):
    /// skipped, nothing of the source is lost.
    TargetHasAll { more: usize },
    /// The target knows only releases `status --refresh` or `state rebuild` found on the
    /// agents, each of them in the source's history: the source's record replaces it,
    /// nothing is lost.
    OnlyRefreshed,
    /// Different histories: refused unless `--force`. `from`: the first release number
    /// where they part (the first of either when they have none in common).
    Differs { from: u32 },
}

impl Fit {
    /// Whether the source's record goes into the target without `--force`.
    pub(crate) fn copies(&self) -> bool {
        matches!(self, Fit::Missing | Fit::OnlyRefreshed)
    }
}

/// How `target` (the target state's record of a deployment, if any) compares with
/// `source` (the source state's record of it).
pub(crate) fn compare(source: &DeploymentState, target: Option<&DeploymentState>) -> Fit {
    let Some(target) = target else {
        return Fit::Missing;
    };
    if target == source {
        return Fit::Same;
    }
    if target.history.starts_with(&source.history) {
        return Fit::TargetHasAll {
            more: target.history.len() - source.history.len(),
        };
    }
    let known = target.history.iter().all(|t| {
        t.is_from_agents()
            && source.history.iter().any(|s| {
                (s.result == "ok") == (t.result == "ok")
                    && s.commit == t.commit
                    && t.agents.iter().all(|(agent, r)| {
                        s.agents.get(agent).is_some_and(|a| a.release == r.release)
                    })
            })
    });
    if known {
        return Fit::OnlyRefreshed;
    }
    let parted = source
        .history
        .iter()
        .zip(&target.history)
        .find(|(s, t)| s != t)
        .map(|(s, t)| s.number.min(t.number));
    Fit::Differs {
        // No pair differs: the target's history is the beginning of the source's (the
        // other way round the target has all), so they part where the target's ends.
        from: parted.unwrap_or_else(|| {
            source
                .history
                .get(target.history.len())
                .map_or(1, |h| h.number)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AgentResult, HistoryEntry, REBUILT, REFRESHED};

    fn release(number: u32, commit: &str, note: &str) -> HistoryEntry {
        HistoryEntry {
            number,
            commit: commit.into(),
            result: "ok".into(),
            note: note.into(),
            agents: [(
                "http://a:1".to_string(),
                AgentResult {
                    release: number,
                    result: "ok".into(),
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    fn record(history: Vec<HistoryEntry>) -> DeploymentState {
        DeploymentState {
            env: "prod".into(),
            history,
            ..Default::default()
        }
    }

    #[test]
    fn missing_same_and_newer_targets() {
        let src = record(vec![release(1, "a", ""), release(2, "b", "")]);
        assert_eq!(compare(&src, None), Fit::Missing);
        assert_eq!(compare(&src, Some(&src.clone())), Fit::Same);
        let mut newer = src.clone();
        newer.history.push(release(3, "c", "env set X"));
        assert_eq!(compare(&src, Some(&newer)), Fit::TargetHasAll { more: 1 });
        // Only fresher instances: nothing of the source is missing there.
        let mut fresher = src.clone();
        fresher.owner = "user:x".into();
        assert_eq!(compare(&src, Some(&fresher)), Fit::TargetHasAll { more: 0 });
    }

    #[test]
    fn a_refreshed_target_is_replaced_when_the_source_knows_its_release() {
        let src = record(vec![release(1, "a", ""), release(2, "b", "")]);
        let refreshed = record(vec![release(2, "b", REFRESHED)]);
        assert_eq!(compare(&src, Some(&refreshed)), Fit::OnlyRefreshed);
        assert!(Fit::OnlyRefreshed.copies());
        // A release the source does not have: refused.
        let other = record(vec![release(3, "c", REFRESHED)]);
        assert_eq!(compare(&src, Some(&other)), Fit::Differs { from: 1 });
    }

    #[test]
    fn a_rebuilt_target_is_replaced_when_the_source_has_its_releases() {
        let mut failed = release(2, "b", "");
        failed.result = "failed at health: refused".into();
        let src = record(vec![release(1, "a", ""), failed.clone()]);
        failed.note = REBUILT.into();
        let rebuilt = record(vec![release(1, "a", REBUILT), failed]);
        assert_eq!(compare(&src, Some(&rebuilt)), Fit::OnlyRefreshed);
        // One the source lacks: refused.
        let more = record(vec![release(1, "a", REBUILT), release(3, "c", REBUILT)]);
        assert_eq!(compare(&src, Some(&more)), Fit::Differs { from: 1 });
    }

    #[test]
    fn differing_histories_name_where_they_part() {
        let src = record(vec![release(1, "a", ""), release(2, "b", "")]);
        let other = record(vec![release(1, "a", ""), release(2, "x", "")]);
        assert_eq!(compare(&src, Some(&other)), Fit::Differs { from: 2 });
        let shorter = record(vec![release(1, "a", "")]);
        assert_eq!(compare(&src, Some(&shorter)), Fit::Differs { from: 2 });
        assert!(!Fit::Differs { from: 2 }.copies());
    }
}
