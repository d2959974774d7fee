//! A deployment declaration checked and turned into the agent's spec, and back.

use super::*;

impl DeploymentDecl {
    /// Checks what can be checked without an agent; the error names the field. Long on
    /// purpose: one short check per field, in the declaration's order (the agent checks
    /// every field again, `Spec::validate`).
    pub(crate) fn validate(&self, name: &str) -> anyhow::Result<()> {
        validate_name("name", name)?;
        if self.object_type != "deployment" {
            return Err(bad_input(format!(
                "object_type: {:?} must be \"deployment\"",
                self.object_type
            )));
        }
        if self.kind != "process" {
            return Err(bad_input(format!(
                "type: {:?} is not a deployment type (available: process)",
                self.kind
            )));
        }
        if self.repo.trim().is_empty() {
            return Err(bad_input("repo: is required (--repo URL or path)"));
        }
        if self.command.trim().is_empty() {
            return Err(bad_input(
                "command: is required (--command, e.g. \"python app.py\")",
            ));
        }
        if let Some(p) = self.port {
            if !(1..=65535).contains(&p) {
                return Err(bad_input(format!("port: {p} is out of range 1-65535")));
            }
        }
        if let Some(r) = &self.restart {
            if !matches!(r.as_str(), "always" | "on-failure" | "never") {
                return Err(bad_input(format!(
                    "restart: {r:?} is not one of always, on-failure, never"
                )));
            }
        }
        if let Some(p) = &self.health.path {
            if !p.starts_with('/') {
                return Err(bad_input(format!("health.path: {p:?} must start with '/'")));
            }
        }
        if let Some(t) = &self.health.startup_timeout {
            parse_duration("health.startup_timeout", t)?;
        }
        if let Some(t) = &self.health.interval {
            parse_duration("health.interval", t)?;
        }
        let h = &self.health;
        if h.unhealthy_after == Some(0) || h.restart_after == Some(0) {
            return Err(bad_input(
                "health.unhealthy_after, health.restart_after: a number of failed checks is at least 1",
            ));
        }
        if let Some(r) = h.restart_after {
            // 3: the agent's default.
            let u = h.unhealthy_after.unwrap_or(3);
            if r < u {
                return Err(bad_input(format!(
                    "health.restart_after: {r} must be at least health.unhealthy_after ({u}): an instance is taken out of traffic before it is restarted"
                )));
            }
        }
        warmup::validate(&self.warmup)?;
        if let Some(v) = &self.python {
            let ok = v.split('.').count() <= 3
                && v.split('.').all(|p| {
                    !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit())
                });
            if !ok {
                return Err(bad_input(format!(
                    "python: {v:?} is not a Python version; write e.g. 3.11 or 3.12.4"
                )));
            }
        }
        self.resources.validate()?;
        artifacts::validate(&self.artifacts)?;
        if let Some(r) = &self.replicas {
            r.validate(self.strategy.as_deref() == Some("recreate"))?;
        }
        for (field, t) in [
            ("kill_timeout", &self.kill_timeout),
            ("drain_timeout", &self.drain_timeout),
            ("hold_timeout", &self.hold_timeout),
            ("idle_timeout", &self.idle_timeout),
            ("wake_timeout", &self.wake_timeout),
        ] {
            if let Some(t) = t {
                parse_duration(field, t)?;
            }
        }
        if self.idle_timeout.is_some() && self.strategy.as_deref() == Some("recreate") {
            return Err(bad_input(
                "idle_timeout: needs strategy switch (the node proxy keeps the port open while the app sleeps and wakes it at the next request)",
            ));
        }
        if let Some(v) = self
            .strategy
            .as_deref()
            .filter(|v| !matches!(*v, "switch" | "recreate"))
        {
            return Err(bad_input(format!(
                "strategy: {v:?} is not one of switch, recreate"
            )));
        }
        if let Some(v) = self
            .proxy
            .as_deref()
            .filter(|v| !matches!(*v, "http" | "tcp"))
        {
            return Err(bad_input(format!("proxy: {v:?} is not one of http, tcp")));
        }
        for k in self.env_vars.keys() {
            let ok = !k.is_empty()
                && !k.as_bytes()[0].is_ascii_digit()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(bad_input(format!(
                    "env_vars.{k}: is not a valid variable name"
                )));
            }
        }
        if let Some(o) = &self.owner {
            if !(o.starts_with("user:") || o.starts_with("group:")) {
                return Err(bad_input(format!(
                    "owner: {o:?} must be user:NAME or group:NAME"
                )));
            }
        }
        if let Some(env) = &self.env {
            validate_name("env", env)?;
        }
        Ok(())
    }

    /// The request the agent gets. `root` resolves a relative local repo path.
    pub(crate) fn to_spec(&self, name: &str, root: &Path) -> anyhow::Result<pb::DeploymentSpec> {
        let ms = |field: &str, v: &Option<String>| -> anyhow::Result<u64> {
            Ok(match v {
                Some(v) => parse_duration(field, v)?.as_millis() as u64,
                None => 0,
            })
        };
        let mut spec = pb::DeploymentSpec {
            name: name.to_string(),
            repo: absolute_repo(&self.repo, root),
            git_ref: self.git_ref.clone().unwrap_or_default(),
            workdir: self.workdir.clone().unwrap_or_default(),
            command: self.command.clone(),
            pip: self.packages.pip.clone(),
            apt: self.packages.apt.clone(),
            conda: self.packages.conda.clone(),
            requirements: self.requirements.clone().unwrap_or_default(),
            start_script: self.start_script.clone().unwrap_or_default(),
            env_vars: self
                .env_vars
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            secrets: self.secrets.clone(),
            port: self.port.unwrap_or(0) as u32,
            health_path: self.health.path.clone().unwrap_or_default(),
            health_timeout_ms: ms("health.startup_timeout", &self.health.startup_timeout)?,
            health_interval_ms: ms("health.interval", &self.health.interval)?,
            health_unhealthy_after: self.health.unhealthy_after.unwrap_or(0),
            health_restart_after: self.health.restart_after.unwrap_or(0),
            warmup: self.warmup.iter().map(Warmup::to_pb).collect(),
            restart: self.restart.clone().unwrap_or_default(),
            owner: self.owner.clone().unwrap_or_default(),
            kill_timeout_ms: ms("kill_timeout", &self.kill_timeout)?,
            pinned: vec![],
            commit: String::new(),
            python: self.python.clone().unwrap_or_default(),
            strategy: self.strategy.clone().unwrap_or_default(),
            proxy: self.proxy.clone().unwrap_or_default(),
            drain_timeout_ms: ms("drain_timeout", &self.drain_timeout)?,
            hold_timeout_ms: ms("hold_timeout", &self.hold_timeout)?,
            idle_timeout_ms: ms("idle_timeout", &self.idle_timeout)?,
            wake_timeout_ms: ms("wake_timeout", &self.wake_timeout)?,
            resources: self.resources.to_pb()?,
            artifacts: self.artifacts.iter().map(Artifact::to_pb).collect(),
            // `run --allow-unpinned` says so; nothing else does.
            allow_unpinned_artifacts: false,
            ..Default::default()
        };
        if let Some(r) = &self.replicas {
            r.to_pb(&mut spec)?;
        }
        Ok(spec)
    }
}

/// A declaration from what an agent runs (for rebuilding a lost state).
pub(crate) fn from_spec(s: &pb::DeploymentSpec) -> DeploymentDecl {
    let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let dur = |ms: u64| {
        (ms > 0).then(|| {
            if ms.is_multiple_of(1000) {
                format!("{}s", ms / 1000)
            } else {
                format!("{ms}ms")
            }
        })
    };
    DeploymentDecl {
        object_type: "deployment".into(),
        kind: "process".into(),
        env: None,
        repo: s.repo.clone(),
        git_ref: opt(&s.git_ref),
        workdir: opt(&s.workdir),
        command: s.command.clone(),
        packages: Packages {
            pip: s.pip.clone(),
            apt: s.apt.clone(),
            conda: s.conda.clone(),
        },
        requirements: opt(&s.requirements),
        start_script: opt(&s.start_script),
        env_vars: s
            .env_vars
            .iter()
            .map(|(k, v)| (k.clone(), Scalar::Text(v.clone())))
            .collect(),
        secrets: s.secrets.clone(),
        port: (s.port > 0).then_some(s.port as i64),
        health: Health {
            path: opt(&s.health_path),
            startup_timeout: dur(s.health_timeout_ms),
            interval: dur(s.health_interval_ms),
            // The defaults are left out, as a person would write it.
            unhealthy_after: Some(s.health_unhealthy_after).filter(|n| *n > 0 && *n != 3),
            restart_after: Some(s.health_restart_after)
                .filter(|n| *n > 0 && *n != s.health_unhealthy_after.max(3).max(6)),
        },
        apply_path: None,
        owner: opt(&s.owner),
        restart: opt(&s.restart),
        kill_timeout: dur(s.kill_timeout_ms),
        // The defaults are left out, as a person would write it.
        strategy: opt(&s.strategy).filter(|v| v != "switch"),
        proxy: opt(&s.proxy).filter(|v| v != "http"),
        drain_timeout: dur(s.drain_timeout_ms).filter(|d| d != "30s"),
        hold_timeout: dur(s.hold_timeout_ms).filter(|d| d != "10s"),
        idle_timeout: dur(s.idle_timeout_ms),
        // Only with an idle timeout (it does nothing without one).
        wake_timeout: dur(s.wake_timeout_ms).filter(|d| d != "60s" && s.idle_timeout_ms > 0),
        replicas: Replicas::from_pb(s),
        python: opt(&s.python),
        resources: Resources::from_pb(s.resources.as_ref()),
        artifacts: s.artifacts.iter().map(Artifact::from_pb).collect(),
        warmup: s.warmup.iter().map(Warmup::from_pb).collect(),
    }
}

/// The declaration an agent kept with a release, as a person would have written it: also
/// without the values the agent fills in where a declaration leaves them out (health
/// startup_timeout 120s and interval 5s, or 10s from an older agent; kill_timeout 10s,
/// restart on-failure).
pub(crate) fn as_written(s: &pb::DeploymentSpec) -> DeploymentDecl {
    let mut d = from_spec(s);
    let drop = |v: &mut Option<String>, default: &str| {
        if v.as_deref() == Some(default) {
            *v = None;
        }
    };
    drop(&mut d.health.startup_timeout, "120s");
    drop(&mut d.health.interval, "5s");
    drop(&mut d.health.interval, "10s");
    drop(&mut d.kill_timeout, "10s");
    drop(&mut d.restart, "on-failure");
    d
}
