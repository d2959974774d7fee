//! Helpers for the end-to-end tests: they run the real `deploy-agent` and `deployctl`
//! binaries against real git repositories holding small stdlib-Python apps.
//!
//! * [`Agent`] starts `deploy-agent` on its own loopback address with its own data dir and
//!   kills it, and every app it started, when dropped (apps outlive the agent by design).
//! * [`Project`] is a temporary `--project` directory for `deployctl`.
//! * [`GitRepo`] makes a git repository with the git CLI.
//! * [`http_get`], [`http_post`] and [`wait_until`]: deadlines and polling, never sleeps
//!   used as synchronisation.
//!
//! Build the binaries first (`cargo build --workspace`): the tests look for them next to the
//! test executable, in the cargo target directory, like habitat's tests do.
//!
//! # Loopback addresses
//!
//! Every test runs its agents and apps on its own `127.0.0.N`, so tests can run in parallel
//! and all use port 8000 for their apps. Keep this table in step with the tests.
//!
//! | address      | test (file)                                            |
//! |--------------|--------------------------------------------------------|
//! | 127.0.0.2-4  | `fleet_of_three_runs_applies_and_removes` (fleet)       |
//! | 127.0.0.5-6  | `fan_out_reports_the_agent_that_failed` (fleet)         |
//! | 127.0.0.7    | `history_and_rollback_across_three_releases` (fleet)    |
//! | 127.0.0.21   | `deploy_at_tag_serves_release_and_status_json` (deploy) |
//! | 127.0.0.22   | `deploy_at_short_and_full_commit` (deploy)              |
//! | 127.0.0.23   | `start_script_writes_a_file_the_app_serves` (deploy)    |
//! | 127.0.0.24   | `redeploy_with_new_ref_and_run_load` (deploy)           |
//! | 127.0.0.25   | `pip_package_is_installed_for_the_app` (packages)       |
//! | 127.0.0.26   | `iris_example_predicts` (packages)                      |
//! | 127.0.0.31   | `broken_release_never_healthy_keeps_previous` (failures) |
//! | 127.0.0.32   | `release_exiting_at_once_keeps_previous` (failures)     |
//! | 127.0.0.33   | `unknown_repo_fails_and_creates_nothing` (failures)     |
//! | 127.0.0.34   | `unknown_ref_fails_and_keeps_status` (failures)         |
//! | 127.0.0.41   | `remove_kills_app_and_its_child` (lifecycle)            |
//! | 127.0.0.42   | `logs_show_app_output_and_deploy_steps` (lifecycle)     |
//! | 127.0.0.43   | `remove_unknown_deployment_fails` (lifecycle)           |
//! | 127.0.0.44   | `concurrent_writers_lose_nothing_in_the_state_file` (state) |
//! | 127.0.0.45-46| `concurrent_writers_lose_nothing_in_etcd` (state: etcd, agent) |
//! | 127.0.0.47-48| `etcd_down_is_a_clear_error_and_changes_nothing` (state) |
//! | 127.0.0.49   | `a_lost_state_file_is_rebuilt_from_the_agents` (state)  |
//! | 127.0.0.50   | `bad_env_input_names_the_problem` (state)               |
//! | 127.0.0.51   | `two_deployments_and_a_port_conflict` (ports)           |
//! | 127.0.0.52   | `foreign_process_on_the_port_is_named` (ports)          |
//! | 127.0.0.89   | `a_private_repository_over_ssh_with_a_key_and_a_pinned_host_key` (security: agent) |
//! | 127.0.0.90-99| security (agents .91, .93-.96; sshd .99) and hostile (.97, .98) |
//! | 127.0.0.81   | `same_packages_reuse_the_environment_and_new_requirements_build_one` (cache) |
//! | 127.0.0.82   | `concurrent_deploys_sharing_a_key_build_it_once` (cache) |
//! | 127.0.0.83   | `unused_environments_are_collected_and_used_ones_kept` (cache) |
//! | 127.0.0.84   | `locked_deploys_install_exactly_the_recorded_versions` (cache) |
//! | 127.0.0.85   | `a_corrupt_mirror_is_cloned_again` (cache)              |
//! | 127.0.0.56   | `bad_name_exits_2` (bad_input)                          |
//! | 127.0.0.57   | `port_out_of_range_exits_2` (bad_input)                 |
//! | 127.0.0.58   | `unknown_field_in_declaration_exits_2` (bad_input)      |
//! | 127.0.0.61   | `kill9_agent_apps_keep_serving_and_are_readopted` (restart) |
//! | 127.0.0.62   | `reboot_starts_every_deployment_at_its_release` (restart) |
//! | 127.0.0.63   | `crash_loop_backs_off_and_agent_stays_responsive` (crash_loop) |
//! | 127.0.0.64-66 | `haproxy_routes_around_an_unhealthy_instance` (haproxy) |
//! | 127.0.0.67   | `metrics_parse_and_cover_the_agent` (metrics)           |
//! | 127.0.0.68   | `nodes_shows_each_agent` (nodes)                        |
//! | 127.0.0.69   | `config_file_and_flags` (agent_config)                  |
//! | 127.0.0.70   | `chatty_app_logs_are_rotated` (agent_config)            |
//! | 127.0.105.1-6 | hung_agent: a stopped agent (.1-.3), hung mid-stream (.4-.5), token warning (.6) |

mod agent;
mod apps;
mod git;
mod http;
mod project;
mod prom;

pub use agent::{agent_admin, tail, token_in, Agent};
pub use apps::{app_py, APP_PY, CRASH_AFTER_PY, EXIT_AT_ONCE_PY, NEVER_HEALTHY_PY};
pub use git::GitRepo;
pub use http::{get_json, http_get, http_post, http_request, wait_for_json};
pub use project::{check_status_shape, Output, Project};
pub use prom::{parse_metrics, Family, Sample};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a `deployctl` command may take before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The same for commands that install Python packages.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(400);

// Binaries

/// The cargo target directory of this build (`target/debug`): the test executable lives in
/// `target/debug/deps/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable's path");
    let mut dir = exe
        .parent()
        .expect("test executable has no parent")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn binary(name: &str, env_override: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_override) {
        return PathBuf::from(p);
    }
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{name} not found at {}: run cargo build first (cargo build --workspace), or set {env_override}",
        path.display()
    );
    path
}

/// `deploy-agent` (override with `DEPLOY_AGENT_BIN`).
pub fn agent_bin() -> PathBuf {
    binary("deploy-agent", "DEPLOY_AGENT_BIN")
}

/// `deployctl` (override with `DEPLOYCTL_BIN`).
pub fn deployctl_bin() -> PathBuf {
    binary("deployctl", "DEPLOYCTL_BIN")
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
}

// Polling

/// Polls `cond` every 50 ms until it holds (true) or `deadline` has passed (false).
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) STATE ...": the command may contain spaces and parentheses.
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}
