//! In which waves a deploy reaches the env's agents: the canary first (`--canary`), then
//! `--max-parallel` at a time (default: all at once).

/// How a deploy rolls across the env's agents: all at once by default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rollout {
    /// Agents deployed to at a time; `None`: all.
    pub max_parallel: Option<usize>,
    /// The first agent alone first; the others only if it became healthy.
    pub canary: bool,
}

impl Rollout {
    /// The waves of `addresses`, in order.
    pub(super) fn waves(self, addresses: &[String]) -> Vec<Vec<String>> {
        let mut rest = addresses;
        let mut waves = Vec::new();
        if self.canary && rest.len() > 1 {
            waves.push(vec![rest[0].clone()]);
            rest = &rest[1..];
        }
        let size = self.max_parallel.unwrap_or(rest.len()).max(1);
        waves.extend(rest.chunks(size).map(|c| c.to_vec()));
        waves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("a{i}")).collect()
    }

    #[test]
    fn waves_are_the_canary_then_groups_of_max_parallel() {
        let all = |r: Rollout, n| r.waves(&agents(n));
        assert_eq!(all(Rollout::default(), 3), [agents(3)]);
        let canary = Rollout {
            canary: true,
            max_parallel: None,
        };
        assert_eq!(
            all(canary, 3),
            [vec!["a1".to_string()], vec!["a2".into(), "a3".into()]]
        );
        assert_eq!(all(canary, 1), [agents(1)], "one agent is its own canary");
        let two = Rollout {
            canary: false,
            max_parallel: Some(2),
        };
        assert_eq!(
            all(two, 5).iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        let both = Rollout {
            canary: true,
            max_parallel: Some(1),
        };
        assert_eq!(all(both, 3).len(), 3);
    }
}
