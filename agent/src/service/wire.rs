//! Conversions between the wire (protobuf) and the domain: requests into domain types,
//! views and deploy events back.

use deployctl_proto::v1 as pb;

use crate::pipeline::events;
use crate::spec::{RawArtifact, RawResources, RawSpec, RawWarmup, Spec};
use crate::supervisor::View;

pub(super) fn raw_spec(s: pb::DeploymentSpec) -> RawSpec {
    RawSpec {
        name: s.name,
        repo: s.repo,
        git_ref: s.git_ref,
        workdir: s.workdir,
        command: s.command,
        pip: s.pip,
        apt: s.apt,
        conda: s.conda,
        requirements: s.requirements,
        start_script: s.start_script,
        env_vars: s.env_vars.into_iter().collect(),
        secrets: s.secrets,
        port: s.port,
        health_path: s.health_path,
        health_timeout_ms: s.health_timeout_ms,
        health_interval_ms: s.health_interval_ms,
        health_unhealthy_after: s.health_unhealthy_after,
        health_restart_after: s.health_restart_after,
        warmup: s
            .warmup
            .into_iter()
            .map(|w| RawWarmup {
                method: w.method,
                path: w.path,
                body: w.body,
            })
            .collect(),
        restart: s.restart,
        owner: s.owner,
        kill_timeout_ms: s.kill_timeout_ms,
        strategy: s.strategy,
        drain_timeout_ms: s.drain_timeout_ms,
        hold_timeout_ms: s.hold_timeout_ms,
        proxy: s.proxy,
        replicas: s.replicas,
        replicas_max: s.replicas_max,
        target_in_flight: s.target_in_flight,
        scale_up_after_ms: s.scale_up_after_ms,
        scale_down_after_ms: s.scale_down_after_ms,
        idle_timeout_ms: s.idle_timeout_ms,
        wake_timeout_ms: s.wake_timeout_ms,
        pinned: s.pinned,
        commit: s.commit,
        python: s.python,
        resources: s
            .resources
            .map(|r| RawResources {
                memory: r.memory,
                cpus: r.cpus,
                pids: r.pids,
                gpus: r.gpus,
                build_memory: r.build_memory,
            })
            .unwrap_or_default(),
        artifacts: s
            .artifacts
            .into_iter()
            .map(|a| RawArtifact {
                url: a.url,
                sha256: a.sha256,
                path: a.path,
                extract: a.extract,
            })
            .collect(),
        allow_unpinned_artifacts: s.allow_unpinned_artifacts,
    }
}

fn spec_to_pb(s: &Spec) -> pb::DeploymentSpec {
    pb::DeploymentSpec {
        name: s.name.clone(),
        repo: s.repo.clone(),
        git_ref: s.git_ref.clone().unwrap_or_default(),
        commit: s.commit.clone().unwrap_or_default(),
        python: s.python.clone().unwrap_or_default(),
        workdir: s.workdir.to_string_lossy().into_owned(),
        command: s.command.clone(),
        pip: s.pip.clone(),
        apt: s.apt.clone(),
        conda: vec![],
        requirements: path_str(&s.requirements),
        start_script: path_str(&s.start_script),
        env_vars: s.env_vars.clone().into_iter().collect(),
        secrets: s.secrets.clone(),
        port: s.port as u32,
        health_path: s.health.path.clone().unwrap_or_default(),
        health_timeout_ms: s.health.timeout.as_millis() as u64,
        health_interval_ms: s.health.interval.as_millis() as u64,
        health_unhealthy_after: s.health.unhealthy_after,
        health_restart_after: s.health.restart_after,
        warmup: s
            .warmup
            .iter()
            .map(|w| pb::WarmupRequest {
                method: w.method.clone(),
                path: w.path.clone(),
                body: w.body.clone(),
            })
            .collect(),
        restart: s.restart.as_str().to_string(),
        owner: s.owner.clone(),
        kill_timeout_ms: s.kill_timeout.as_millis() as u64,
        strategy: s.strategy.as_str().to_string(),
        drain_timeout_ms: s.drain_timeout.as_millis() as u64,
        hold_timeout_ms: s.hold_timeout.as_millis() as u64,
        proxy: s.proxy.as_str().to_string(),
        replicas: s.autoscale.as_ref().map_or(s.replicas, |a| a.min),
        replicas_max: s.autoscale.as_ref().map_or(0, |a| a.max),
        target_in_flight: s.autoscale.as_ref().map_or(0, |a| a.target_in_flight),
        scale_up_after_ms: s
            .autoscale
            .as_ref()
            .map_or(0, |a| a.scale_up_after.as_millis() as u64),
        scale_down_after_ms: s
            .autoscale
            .as_ref()
            .map_or(0, |a| a.scale_down_after.as_millis() as u64),
        idle_timeout_ms: s.idle_timeout.map_or(0, |d| d.as_millis() as u64),
        wake_timeout_ms: s.wake_timeout.as_millis() as u64,
        pinned: s.pinned.clone(),
        resources: (!s.resources.is_empty()).then(|| {
            let r = s.resources.to_raw();
            pb::Resources {
                memory: r.memory,
                cpus: r.cpus,
                pids: r.pids,
                gpus: r.gpus,
                build_memory: r.build_memory,
            }
        }),
        artifacts: s
            .artifacts
            .iter()
            .map(|a| pb::Artifact {
                url: a.url.clone(),
                sha256: a.sha256.clone().unwrap_or_default(),
                path: a.path.to_string_lossy().into_owned(),
                extract: a.extract,
            })
            .collect(),
        allow_unpinned_artifacts: s.artifacts.iter().any(|a| a.sha256.is_none()),
    }
}

fn path_str(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn view_to_pb(v: View) -> pb::DeploymentStatus {
    pb::DeploymentStatus {
        owner: v.spec.as_ref().map(|s| s.owner.clone()).unwrap_or_default(),
        port: v.spec.as_ref().map(|s| s.port as u32).unwrap_or(0),
        spec: v.spec.as_ref().map(spec_to_pb),
        name: v.name,
        state: v.state.as_str().to_string(),
        release: v.release,
        git_ref: v.git_ref,
        commit: v.commit,
        pid: v.pid.unwrap_or(0),
        restarts: v.restarts,
        url: v.url,
        uptime_s: v.uptime.as_secs(),
        cpu_percent: v.cpu_percent,
        memory_bytes: v.memory_bytes,
        last_health: v.last_health,
        message: v.message,
        packages_hash: v.packages_hash,
        last_exit_code: v.last_exit_code.unwrap_or(-1),
        next_restart_in_s: v.next_restart_in.map(|d| d.as_secs().max(1)).unwrap_or(0),
        deployed_at: v.deployed_at,
        private_address: v.private_address.map(|a| a.to_string()).unwrap_or_default(),
        switched_at: v.switched_at.unwrap_or(0),
        previous_drained_ms: v
            .previous_drained_ms
            .and_then(|ms| i64::try_from(ms).ok())
            .unwrap_or(-1),
        replicas: v
            .replicas
            .iter()
            .map(|r| pb::ReplicaStatus {
                pid: r.pid.unwrap_or(0),
                private_address: r.private_address.map(|a| a.to_string()).unwrap_or_default(),
                state: r.state.as_str().to_string(),
                restarts: r.restarts,
                cpu_percent: r.cpu_percent,
                memory_bytes: r.memory_bytes,
                kernel: Some(kernel_to_pb(&r.kernel)),
                last_health: r.last_health.clone(),
                message: r.message.clone(),
            })
            .collect(),
        kernel: Some(kernel_to_pb(&v.kernel)),
        traffic: v.traffic.map(|t| pb::Traffic {
            requests_per_second: t.requests_per_second,
            p50_ms: t.p50.map(|s| s * 1000.0).unwrap_or(-1.0),
            p99_ms: t.p99.map(|s| s * 1000.0).unwrap_or(-1.0),
            error_rate: t.error_rate,
            in_flight: t.in_flight,
            window_s: t.window.as_secs_f64(),
        }),
        last_event_at: v.last_event.as_ref().map(|e| e.at).unwrap_or(0),
        last_event: v.last_event.map(|e| e.text).unwrap_or_default(),
        adopted_at: v.adopted_at.unwrap_or(0),
        failed_deploy: v.failed_deploy.map(|f| pb::FailedDeploy {
            release: f.release,
            step: f.step,
            reason: f.reason,
            at: f.at,
        }),
        generation: v.generation,
        releases: Vec::new(),
        // Filled by the handler (it may count what the directory holds).
        data_dir: String::new(),
        data_bytes: None,
        cache_bytes: None,
        running_replicas: v.running_replicas,
        scale_events: v
            .scale_events
            .into_iter()
            .map(|e| pb::ScaleEvent {
                at: e.at,
                from: e.from,
                to: e.to,
                text: e.text,
            })
            .collect(),
        in_flight_per_replica: v.in_flight_per_replica.unwrap_or(-1.0),
        recent_deploys: v
            .deploys
            .into_iter()
            .map(|d| pb::DeployRecord {
                deploy_id: d.id,
                release: d.release,
                git_ref: d.git_ref,
                commit: d.commit,
                packages_hash: d.packages_hash,
                result: d.result,
                at: d.at,
            })
            .collect(),
    }
}

/// A release the agent keeps, with the spec it was deployed with.
pub(super) fn release_to_pb(r: &crate::store::ReleaseRecord) -> pb::KeptRelease {
    pb::KeptRelease {
        number: r.number,
        git_ref: r.git_ref.clone(),
        commit: r.commit.clone(),
        packages_hash: r.packages_hash.clone(),
        deployed_at: r.deployed_at,
        result: r.result.as_str().to_string(),
        spec: Some(spec_to_pb(&r.spec)),
    }
}

fn kernel_to_pb(k: &crate::instance::RunTotals) -> pb::KernelStats {
    pb::KernelStats {
        memory_limit_bytes: k.memory_limit.unwrap_or(0),
        oom_kills: k.oom_kills,
        cpu_periods: k.cpu_periods,
        cpu_throttled_periods: k.throttled_periods,
        cpu_throttled_seconds: k.throttled_usec as f64 / 1e6,
        oom_killed: k.oom_killed,
    }
}

pub(super) fn event_to_pb(e: events::Event) -> pb::DeployEvent {
    use events::Phase;
    use pb::deploy_event::Phase as P;
    let phase = match e.phase {
        Phase::Started => P::Started,
        Phase::Output => P::Output,
        Phase::Done => P::Done,
        Phase::Skipped => P::Skipped,
        Phase::Failed => P::Failed,
        Phase::Info => P::Info,
    };
    pb::DeployEvent {
        step: e.step.to_string(),
        phase: phase as i32,
        message: e.message,
        elapsed_ms: e.elapsed.as_millis() as u64,
        outcome: e.outcome.map(|o| pb::DeployOutcome {
            ok: o.ok,
            release: o.release,
            commit: o.commit,
            url: o.url,
            failed_step: o.failed_step,
            reason: o.reason,
            output_tail: o.output_tail.join("\n"),
            kept_release: o.kept_release,
            kept_healthy: o.kept_healthy,
            kept_restarted: o.kept_restarted,
            kept_pid: o.kept_pid,
            packages_hash: o.packages_hash,
            git_ref: o.git_ref,
            total_ms: o.total.as_millis() as u64,
            frozen: o.frozen,
            owner: o.owner,
            generation: o.generation,
        }),
    }
}

/// An event of a deploy's stream; a refusal ends it as FAILED_PRECONDITION.
pub(super) fn event_item(e: events::Event) -> Result<pb::DeployEvent, tonic::Status> {
    match &e.refused {
        Some(why) => Err(tonic::Status::failed_precondition(why.clone())),
        None => Ok(event_to_pb(e)),
    }
}

pub(super) fn exec_to_pb(e: crate::exec::ExecEvent) -> pb::ExecOutput {
    use crate::exec::ExecEvent;
    match e {
        ExecEvent::Started { release, cwd } => pb::ExecOutput {
            release,
            cwd,
            ..Default::default()
        },
        ExecEvent::Stdout(stdout) => pb::ExecOutput {
            stdout,
            ..Default::default()
        },
        ExecEvent::Stderr(stderr) => pb::ExecOutput {
            stderr,
            ..Default::default()
        },
        ExecEvent::Exited { code, signal } => pb::ExecOutput {
            exited: true,
            exit_code: code.unwrap_or(-1),
            signal: signal.unwrap_or(0),
            ..Default::default()
        },
    }
}

pub(super) fn plan_to_pb(p: crate::pipeline::plan::Plan) -> pb::PlanReply {
    let current = p.current.as_ref();
    pb::PlanReply {
        git_ref: p.git_ref,
        commit: p.commit,
        has_current: current.is_some(),
        current_release: current.map(|r| r.number).unwrap_or(0),
        current_ref: current.map(|r| r.git_ref.clone()).unwrap_or_default(),
        current_commit: current.map(|r| r.commit.clone()).unwrap_or_default(),
        current_packages_hash: current.map(|r| r.packages_hash.clone()).unwrap_or_default(),
        current_spec: current.map(|r| spec_to_pb(&r.spec)),
        current_frozen: p.current_frozen,
        environment: p.environment.to_string(),
        environment_key: p.environment_key,
        state: p.state,
        artifacts: p
            .artifacts
            .into_iter()
            .map(|(path, url, stored)| pb::PlannedArtifact {
                path,
                url,
                stored: stored.is_some(),
                bytes: stored.unwrap_or(0),
            })
            .collect(),
    }
}
