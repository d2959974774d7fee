//! README.md runs as written: every command block, in order, in one home directory, against
//! real agents and the repository's own example (examples/iris-api); blocks that cannot run
//! here are marked in the README with the reason (see `deployctl_e2e::readme`).
//!
//! What the test stands in for, once for every block (all of it on loopback addresses of
//! its own, so it runs beside the other tests):
//! * the README's nodes `10.0.0.5` and `10.0.0.6` are agents on two loopback addresses,
//!   started as the systemd unit starts them (`deploy-agent --config FILE`), and their config
//!   files stand for `/etc/deploy-agent/config.toml` (`DEPLOY_AGENT_SYSTEM_CONFIG`);
//!   `10.0.0.2` is a real etcd on a third;
//! * the built-in env `local` is at `LOCAL_IP:7070` with its data in the test's directory
//!   (`DEPLOYCTL_LOCAL_ADDRESS`, `DEPLOYCTL_LOCAL_DATA_DIR`);
//! * the test runs as root: `sudo X` runs X.
//!
//! Each step below says what it adds to its block, and why.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deployctl_e2e::readme::{
    blocks, check_files, kill_under, missing_lines, remove_cgroups_named_under, Block, Mark,
    NodeAgent, Ran, Runner,
};
use deployctl_e2e::*;

/// What the test adds to a block marked `step NAME`.
struct Step {
    name: &'static str,
    /// Text of the block replaced before it runs: placeholders a reader fills in.
    replace: &'static [(&'static str, &'static str)],
    before: fn(&mut World),
    after: fn(&mut World),
}

fn nothing(_: &mut World) {}

const STEPS: &[Step] = &[
    // The test uses the debug build scripts/test.sh made: a release build would double its
    // time. The copy into ~/.local/bin (the only way the later blocks find the binaries)
    // runs as written.
    Step {
        name: "install",
        replace: &[
            ("cargo build --release ", "true cargo build --release "),
            ("target/release/", "$BUILD_DIR/"),
        ],
        before: nothing,
        after: nothing,
    },
    // demo.sh runs (with the debug build); this test is itself part of scripts/test.sh.
    Step {
        name: "two-commands",
        replace: &[("scripts/test.sh ", "true scripts/test.sh ")],
        before: nothing,
        after: nothing,
    },
    // Two nodes set up as "A team on one agent" says (one CA, one auth.toml), the CA and
    // the admin's token where the block expects them, and the repository's URL standing
    // for ~/iris-api (tagged v1.2.0, as a reader would have pushed it).
    Step {
        name: "fleet",
        replace: &[("https://git.example.org/me/iris.git", "$HOME/iris-api")],
        before: set_up_fleet,
        after: nothing,
    },
    Step {
        name: "shared-state",
        replace: &[],
        before: start_etcd,
        after: nothing,
    },
    // `systemctl restart deploy-agent`: the test restarts the node's agent itself.
    Step {
        name: "team-init",
        replace: &[(
            "sudo systemctl restart deploy-agent",
            "true systemctl restart deploy-agent",
        )],
        before: nothing,
        after: restart_node1,
    },
    // scp from the node is a copy here; the token is the one init printed just before.
    Step {
        name: "team-laptop",
        replace: &[
            ("scp 10.0.0.5:/var/lib/deploy-agent/", "cp $NODE1_DATA/"),
            (
                "'dat_...'",
                "\"$(grep -o -m1 'dat_[A-Za-z0-9_-]*' \"$PREV_OUTPUT\" | head -1)\"",
            ),
        ],
        before: nothing,
        after: nothing,
    },
    // The files a reader has: a password, a git token, an ssh key.
    Step {
        name: "secrets",
        replace: &[],
        before: write_secret_files,
        after: nothing,
    },
];

/// Fields drop in order: the cleanup first, while the agents' logs (which name their
/// cgroups) are still there.
struct World {
    _cleanup: Cleanup,
    runner: Runner,
    node1: NodeAgent,
    node2: NodeAgent,
    etcd_ip: Loopback,
    etcd: Option<Etcd>,
    _ips: Vec<Loopback>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

fn sh(world: &World, script: &str) {
    let out = std::process::Command::new("bash")
        .args(["-ec", script])
        .env("HOME", &world.runner.home)
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_up_fleet(w: &mut World) {
    let agent = agent_bin();
    let (a, b) = (&w.node1, &w.node2);
    sh(
        w,
        &format!(
            "git -C ~/iris-api tag v1.2.0
             {agent} --config {c1} init --name {ip1} > {root}/fleet-init.out
             mkdir -p {d2}/tls && cp {d1}/tls/ca.pem {d1}/tls/ca.key {d2}/tls/ && cp {d1}/auth.toml {d2}/
             {agent} --config {c2} init --cert-only --name {ip2}
             cd \"$(cat {root}/state/cwd)\" && mkdir -p certs && cp {d1}/tls/ca.pem certs/
             install -D -m 600 /dev/stdin ~/.config/deployctl/prod.token <<< \"$(grep -o -m1 'dat_[A-Za-z0-9_-]*' {root}/fleet-init.out)\"",
            agent = agent.display(),
            c1 = a.config.display(),
            c2 = b.config.display(),
            d1 = a.data_dir.display(),
            d2 = b.data_dir.display(),
            ip1 = a.ip,
            ip2 = b.ip,
            root = w.runner.root.display(),
        ),
    );
    w.node1.start();
    w.node2.start();
}

fn start_etcd(w: &mut World) {
    w.etcd = Some(Etcd::start(&w.etcd_ip));
}

fn restart_node1(w: &mut World) {
    w.node1.restart();
}

fn write_secret_files(w: &mut World) {
    sh(
        w,
        &format!(
            "cd \"$(cat {root}/state/cwd)\"
             printf %s 's3cret-db' > password.txt
             printf %s 'x-access-token:ghp_example' > token.txt
             ssh-keygen -q -t ed25519 -N '' -C readme -f id_ed25519",
            root = w.runner.root.display()
        ),
    );
}

/// The README's addresses, mapped to the test's.
fn global_replacements(w: &World) -> Vec<(String, String)> {
    vec![
        ("10.0.0.5".into(), w.node1.ip.clone()),
        ("10.0.0.6".into(), w.node2.ip.clone()),
        ("10.0.0.2".into(), w.etcd_ip.to_string()),
    ]
}

/// Kills what the README's commands started (agents, proxies, apps, etcd) and deletes the
/// Unix users the agents made, however the test ends.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(root) = self.0.first().cloned() else {
            return;
        };
        for _ in 0..2 {
            kill_under(&root);
        }
        for dir in &self.0 {
            free_app_users(dir);
        }
        remove_cgroups_named_under(
            &root,
            &[
                "node1/agent.stderr",
                "node2/agent.stderr",
                "local-agent/agent.log",
            ],
        );
    }
}

#[test]
fn readme_runs_as_written() {
    let root = repo_root();
    let readme = fs::read_to_string(root.join("README.md")).expect("reading README.md");
    let blocks = blocks(&readme).unwrap_or_else(|e| panic!("README.md: {e}"));
    check_steps_are_used(&blocks);

    let ips: Vec<Loopback> = (0..3).map(|_| loopback()).collect();
    let mut runner = Runner::new(&root);
    let local_data = runner.root.join("local-agent");
    let node1 = NodeAgent::prepare(&runner.root.join("node1"), &ips[1]);
    let node2 = NodeAgent::prepare(&runner.root.join("node2"), &ips[2]);
    let cleanup = Cleanup(vec![
        runner.root.clone(),
        local_data.clone(),
        node1.data_dir.clone(),
        node2.data_dir.clone(),
    ]);
    runner.set_env("DEPLOYCTL_LOCAL_ADDRESS", &format!("{}:7070", ips[0]));
    runner.set_env("DEPLOYCTL_LOCAL_DATA_DIR", &local_data.to_string_lossy());
    runner.set_env(
        "DEPLOY_AGENT_SYSTEM_CONFIG",
        &node1.config.to_string_lossy(),
    );
    runner.set_env("NODE1_DATA", &node1.data_dir.to_string_lossy());
    runner.set_env("BUILD_DIR", &target_dir().to_string_lossy());
    runner.set_env("DEMO_SKIP_BUILD", "1");
    runner.set_env("DEMO_BIN", &target_dir().to_string_lossy());
    let mut world = World {
        _cleanup: cleanup,
        runner,
        node1,
        node2,
        etcd_ip: loopback(),
        etcd: None,
        _ips: ips,
    };
    let homes = [
        "/home/me".to_string(),
        world.runner.home.to_string_lossy().into_owned(),
    ];
    let homes: Vec<&str> = homes.iter().map(String::as_str).collect();

    let mut last: Option<(usize, Ran)> = None;
    for block in &blocks {
        match &block.mark {
            Mark::NotRun(reason) => {
                eprintln!("README.md:{}: not run: {reason}", block.line);
            }
            Mark::Output => {
                let Some((line, ran)) = &last else {
                    panic!("README.md:{}: an output block before any run", block.line);
                };
                let missing = missing_lines(&block.text, &ran.output, &homes);
                assert!(
                    missing.is_empty(),
                    "README.md:{}: the output the README shows is not what the block at line {line} printed; missing:\n{}\n--- printed ---\n{}",
                    block.line,
                    missing.join("\n"),
                    ran.output
                );
            }
            _ if block.is_command() => {
                let ran = run_block(&mut world, block);
                last = Some((block.line, ran));
            }
            _ => {}
        }
    }
    check_files(&blocks, &root);
}

fn run_block(w: &mut World, block: &Block) -> Ran {
    let step = match &block.mark {
        Mark::Step(name) => STEPS.iter().find(|s| s.name == name),
        _ => None,
    };
    let mut text = block.text.clone();
    if let Some(step) = step {
        for (from, to) in step.replace {
            assert!(
                text.contains(from),
                "README.md:{}: step {} replaces {from:?}, which the block no longer has",
                block.line,
                step.name
            );
            text = text.replace(from, to);
        }
        (step.before)(w);
    }
    for (from, to) in global_replacements(w) {
        text = text.replace(&from, &to);
    }
    eprintln!("README.md:{}: running\n{text}", block.line);
    let ran = w.runner.run(&text, Duration::from_secs(420));
    eprintln!("{}", ran.output);
    if ran.code != 0 {
        panic!(
            "README.md:{}: the block exited {}\n--- script ---\n{}\n--- output ---\n{}\n--- node 1's agent ---\n{}\n--- node 2's agent ---\n{}",
            block.line,
            ran.code,
            ran.script,
            ran.output,
            tail(&w.node1.log(), 40),
            tail(&w.node2.log(), 40),
        );
    }
    if let Some(step) = step {
        (step.after)(w);
    }
    ran
}

/// Every step the test defines is used by a block, and every step a block names exists.
fn check_steps_are_used(blocks: &[Block]) {
    let named: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match &b.mark {
            Mark::Step(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    for n in &named {
        assert!(
            STEPS.iter().any(|s| s.name == *n),
            "README.md names step {n}, which tests/tests/readme.rs does not define"
        );
    }
    for s in STEPS {
        assert!(
            named.contains(&s.name),
            "tests/tests/readme.rs defines step {}, which no README block names",
            s.name
        );
    }
}
