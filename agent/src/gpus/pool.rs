//! Which replica holds which GPU. A GPU is held by one replica at a time, whole; a replica
//! keeps the GPUs it has (across deploys and agent restarts), so a model loaded on a GPU
//! and the app's device ordinals stay put.

use std::collections::BTreeMap;
use std::fmt;

use super::{Discovery, Gpu};

/// The holder name of a replica: "deployment/replica", e.g. "web/0". Refusals tell a
/// replica apart from other deployments by the part before the last '/'.
pub(crate) fn holder(deployment: &str, replica: u32) -> String {
    format!("{deployment}/{replica}")
}

/// The deployment part of a holder name.
fn deployment_of(holder: &str) -> &str {
    holder.rsplit_once('/').map_or(holder, |(d, _)| d)
}

/// The node's GPUs and their holders. Not locked: the owner keeps it behind its own mutex,
/// so a check and the assignment that follows it are one step.
#[derive(Debug)]
pub(crate) struct GpuPool {
    /// In index order: "lowest index first" is the order of this list.
    gpus: Vec<Gpu>,
    /// `held[i]`: the holder of `gpus[i]`.
    held: Vec<Option<String>>,
    /// Discovery's sentence, quoted when a node without GPUs refuses.
    note: String,
}

/// A refusal: not enough free GPUs for a replica. Names no other deployment (owners must
/// not learn each other's names), only whether a GPU is used by another deployment or by
/// another replica of the same one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shortage {
    /// GPUs asked for this replica.
    pub asked: u32,
    /// Free GPUs, counting the ones this replica already holds.
    pub free: u32,
    pub total: u32,
    /// Labels ("GPU 0 NVIDIA A10") of the GPUs held by other deployments.
    pub used_by_others: Vec<String>,
    /// Labels of the GPUs held by other replicas of the same deployment.
    pub used_by_siblings: Vec<String>,
    /// Why the node has none, when it has none.
    pub note: String,
}

impl fmt::Display for Shortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let asked = format!("{} GPU{}", self.asked, plural(self.asked as usize));
        if self.total == 0 {
            return write!(
                f,
                "gpus: asked for {asked}, this node has none ({})",
                self.note
            );
        }
        write!(
            f,
            "gpus: asked for {asked} per replica, this node has {} free of {}",
            self.free, self.total
        )?;
        let mut why = Vec::new();
        if !self.used_by_others.is_empty() {
            why.push(used_by(
                &self.used_by_others,
                "another deployment",
                "other deployments",
            ));
        }
        if !self.used_by_siblings.is_empty() {
            why.push(used_by(
                &self.used_by_siblings,
                "another replica of this deployment",
                "other replicas of this deployment",
            ));
        }
        if !why.is_empty() {
            write!(f, " ({})", why.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Shortage {}

/// "GPU 0 X is used by another deployment", "GPU 0 X and GPU 1 X are used by other ...".
fn used_by(labels: &[String], one: &str, many: &str) -> String {
    match labels {
        [only] => format!("{only} is used by {one}"),
        [rest @ .., last] => format!("{} and {last} are used by {many}", rest.join(", ")),
        [] => String::new(),
    }
}

impl GpuPool {
    /// All of discovery's GPUs, none held yet.
    pub(crate) fn new(found: Discovery) -> GpuPool {
        let mut gpus = found.gpus;
        gpus.sort_by_key(|g| g.index);
        GpuPool {
            held: vec![None; gpus.len()],
            gpus,
            note: found.note,
        }
    }

    /// Every GPU of the node, in index order (for [`super::hidden_devices`]).
    pub(crate) fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// Discovery's sentence about the node's GPUs.
    pub(crate) fn note(&self) -> &str {
        &self.note
    }

    pub(crate) fn total(&self) -> u32 {
        self.gpus.len() as u32
    }

    /// GPUs no replica holds.
    pub(crate) fn free(&self) -> u32 {
        self.held.iter().filter(|h| h.is_none()).count() as u32
    }

    /// GPUs held by replicas of deployments other than `deployment`: what a deploy of it
    /// cannot have (its own replicas keep theirs, so they are not counted against it).
    pub(crate) fn held_by_others(&self, deployment: &str) -> u32 {
        self.held
            .iter()
            .flatten()
            .filter(|h| deployment_of(h) != deployment)
            .count() as u32
    }

    /// The GPUs `holder` has, in index order.
    pub(crate) fn held(&self, holder: &str) -> Vec<Gpu> {
        self.indices_of(holder)
            .into_iter()
            .map(|i| self.gpus[i].clone())
            .collect()
    }

    /// Every holder and its GPUs, by holder name (for the records and the operator).
    pub(crate) fn holders(&self) -> BTreeMap<String, Vec<Gpu>> {
        let mut all: BTreeMap<String, Vec<Gpu>> = BTreeMap::new();
        for (gpu, h) in self.gpus.iter().zip(&self.held) {
            if let Some(h) = h {
                all.entry(h.clone()).or_default().push(gpu.clone());
            }
        }
        all
    }

    /// After an agent restart: gives `holder` back the GPUs its records name (its app may
    /// still be running on them). Adds to what it holds. A UUID no longer on the node, or
    /// already given to another holder, is not restored; each such one comes back as a
    /// sentence for the log. A replica left with fewer than it needs gets the rest from
    /// its next [`GpuPool::assign`].
    pub(crate) fn restore(&mut self, holder: &str, uuids: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        for uuid in uuids {
            let Some(i) = self.gpus.iter().position(|g| &g.uuid == uuid) else {
                problems.push(format!(
                    "GPU {uuid} recorded for {holder} is no longer on this node"
                ));
                continue;
            };
            match &self.held[i] {
                Some(other) if other != holder => problems.push(format!(
                    "GPU {uuid} recorded for {holder} is already held by {other}; not restored"
                )),
                _ => self.held[i] = Some(holder.to_string()),
            }
        }
        problems
    }

    /// `n` whole GPUs for `holder`, in index order. A holder keeps the ones it has: with
    /// `n` or more it keeps its lowest `n` (and frees the rest); with fewer, free GPUs are
    /// added, lowest index first. All or nothing: on a shortage nothing changes.
    pub(crate) fn assign(&mut self, holder: &str, n: u32) -> Result<Vec<Gpu>, Shortage> {
        let n = n as usize;
        let own = self.indices_of(holder);
        if own.len() >= n {
            for &i in &own[n..] {
                self.held[i] = None;
            }
            return Ok(self.held(holder));
        }
        let free: Vec<usize> = (0..self.gpus.len())
            .filter(|&i| self.held[i].is_none())
            .collect();
        let missing = n - own.len();
        if free.len() < missing {
            return Err(self.shortage(holder, n as u32, (own.len() + free.len()) as u32));
        }
        for &i in &free[..missing] {
            self.held[i] = Some(holder.to_string());
        }
        Ok(self.held(holder))
    }

    /// Frees the GPUs of `holder` (a replica removed, or its deployment scaled down).
    pub(crate) fn release(&mut self, holder: &str) {
        for h in &mut self.held {
            if h.as_deref() == Some(holder) {
                *h = None;
            }
        }
    }

    /// Frees the GPUs of every replica of `deployment` (the deployment removed).
    pub(crate) fn release_deployment(&mut self, deployment: &str) {
        for h in &mut self.held {
            if h.as_deref().is_some_and(|h| deployment_of(h) == deployment) {
                *h = None;
            }
        }
    }

    /// Indices of the GPUs `holder` has, ascending.
    fn indices_of(&self, holder: &str) -> Vec<usize> {
        (0..self.gpus.len())
            .filter(|&i| self.held[i].as_deref() == Some(holder))
            .collect()
    }

    fn shortage(&self, holder: &str, asked: u32, free: u32) -> Shortage {
        let mine = deployment_of(holder);
        let mut others = Vec::new();
        let mut siblings = Vec::new();
        for (gpu, h) in self.gpus.iter().zip(&self.held) {
            match h.as_deref() {
                Some(h) if h == holder => {}
                Some(h) if deployment_of(h) == mine => siblings.push(gpu.label()),
                Some(_) => others.push(gpu.label()),
                None => {}
            }
        }
        Shortage {
            asked,
            free,
            total: self.total(),
            used_by_others: others,
            used_by_siblings: siblings,
            note: self.note.clone(),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
