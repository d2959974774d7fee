//! Which agents of a fleet a deploy picks and why, for `plan`: as JSON, and as lines for a
//! person.

use serde_json::{json, Value};

use super::{Choice, Fleet};

impl Fleet {
    /// The picks as JSON: registry, selector, count, each matching agent picked or not with
    /// why, and the registered agents the selector leaves out.
    pub(crate) fn explain(&self, choices: &[Choice]) -> Value {
        let agents: Vec<Value> = choices
            .iter()
            .map(|c| json!({"agent": c.address, "picked": c.picked, "why": c.why}))
            .collect();
        let unmatched: Vec<Value> = self
            .unmatched
            .iter()
            .map(|(a, why)| json!({"agent": a, "why": format!("does not match: {why}")}))
            .collect();
        json!({"registry": self.registry, "select": self.select, "count": self.count,
               "agents": agents, "unmatched": unmatched})
    }

    /// The picks for a person, one agent a line.
    pub(crate) fn print(&self, choices: &[Choice]) {
        let count = self
            .count
            .map_or("all of them".to_string(), |n| format!("count {n}"));
        let select = if self.select.is_empty() {
            "every agent"
        } else {
            &self.select
        };
        println!(
            "  fleet: {} agents alive in {} match {select} ({count}):",
            self.agents.len(),
            self.registry
        );
        for c in choices {
            let mark = if c.picked { "picked" } else { "not picked" };
            println!("    {}: {mark}: {}", c.address, c.why);
        }
        for (a, why) in &self.unmatched {
            println!("    {a}: not picked: does not match: {why}");
        }
    }
}
