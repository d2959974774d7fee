//! The agent on a small disk: its data directory on a 64 MiB tmpfs (mounted by the test,
//! unmounted when it ends, passed or failed). A log cannot fill the disk however fast its
//! app writes; a disk an app's log filled leaves room for other deployments' deploys, and
//! the agent says so once; a deploy that cannot check out for want of space says so (and
//! keeps the git mirror); a release directory no record names goes when the agent starts.

use std::path::Path;
use std::time::{Duration, Instant};

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// An agent whose data directory is a tmpfs of `size`, with `config`. The tmpfs is
/// declared first, so it is unmounted after the agent and its apps are gone.
fn agent_on_tmpfs(ip: &str, size: &str, config: &str) -> (Tmpfs, Agent) {
    let mut tmpfs = None;
    let agent = Agent::start_prepared(ip, config, &[], |data| {
        tmpfs = Some(Tmpfs::mount(data, size));
    });
    (tmpfs.expect("the tmpfs was mounted"), agent)
}

/// Deploys the flood app (`FLOOD_PY`) as `name` on `port`.
fn deploy_flood(project: &Project, repo: &GitRepo, name: &str, port: &str) -> Output {
    project.deployctl(&[
        "run",
        name,
        "--env",
        ENV,
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
        "--port",
        port,
        "--health-path",
        "/health",
    ])
}

fn flood_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("app.py", FLOOD_PY);
    repo.commit("flood");
    repo
}

/// The sizes of `app.log` and `app.log.1` .. `app.log.5` (0: missing).
fn log_sizes(logs: &Path) -> [u64; 6] {
    let mut sizes = [0; 6];
    for (n, size) in sizes.iter_mut().enumerate() {
        let name = match n {
            0 => "app.log".to_string(),
            n => format!("app.log.{n}"),
        };
        *size = std::fs::metadata(logs.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
    }
    sizes
}

/// How many lines of the agent's log contain `needle`.
fn said(agent: &Agent, needle: &str) -> usize {
    strip_ansi(&agent.stderr())
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

const MIB: u64 = 1024 * 1024;

#[test]
fn a_fast_writer_stays_within_the_ceiling() {
    let ip = loopback();
    let (max, keep) = (4 * MIB, 2);
    let (_tmpfs, agent) = agent_on_tmpfs(
        &ip,
        "64m",
        &format!("log_max_bytes = {max}\nlog_keep = {keep}\n"),
    );
    let project = Project::for_agent(ENV, &agent);
    let repo = flood_repo();
    deploy_flood(&project, &repo, "flood", "8000").ok();
    let logs = agent.deployment_dir("flood").join("logs");
    let app = |path: &str| get_json(&agent.app_url(8000, path));
    app("/write?mb=200&rate=0").expect("the flood app answers");
    // Sizes sampled while it writes, as fast as it can (100-byte lines, 100 MB/s or so).
    let (mut peak, mut worst) = (0, [0; 6]);
    let (deadline, mut asked) = (Instant::now() + Duration::from_secs(180), Instant::now());
    let mut done = false;
    while !done && Instant::now() < deadline {
        let sizes = log_sizes(&logs);
        assert_eq!(
            sizes[keep + 1..].iter().sum::<u64>(),
            0,
            "log_keep = {keep}: {sizes:?}"
        );
        let total: u64 = sizes.iter().sum();
        if total > peak {
            (peak, worst) = (total, sizes);
        }
        if asked.elapsed() > Duration::from_millis(200) {
            asked = Instant::now();
            done = app("/").is_some_and(|s| s["done"] == true);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(done, "the flood app did not write its 200 MB within 180 s");
    let ceiling = max * (keep as u64 + 1);
    eprintln!("peak of app.log and its rotated files: {peak} bytes {worst:?} (ceiling {ceiling})");
    assert!(
        peak <= ceiling + max,
        "app.log and its rotated files took {peak} bytes {worst:?}: more than log_max_bytes × (log_keep + 1) = {ceiling} and a margin of {max}"
    );
    let newest = std::fs::read(logs.join("app.log.1")).expect("app.log.1");
    assert!(
        newest.len() as u64 <= max,
        "app.log.1 holds {} bytes",
        newest.len()
    );
    assert!(
        newest.starts_with(b"flood line "),
        "app.log.1 starts at a line"
    );
    // Said, but not at every cut.
    let dropped = said(&agent, "faster than its log is kept");
    assert!(
        (1..=3).contains(&dropped),
        "the drop was said {dropped} times"
    );
    assert_eq!(said(&agent, "cannot rotate"), 0);
}

#[test]
fn a_full_disk_leaves_room_for_other_deploys() {
    let ip = loopback();
    let (tmpfs, agent) = agent_on_tmpfs(
        &ip,
        "64m",
        &format!("log_max_bytes = {}\nlog_keep = 3\n", 16 * MIB),
    );
    let project = Project::for_agent(ENV, &agent);
    let repo = flood_repo();
    deploy_flood(&project, &repo, "hog", "8000").ok();
    // The disk nearly full (10 MiB left, less than log_max_bytes), then the hog writes its
    // log, 20 MB a second, on and on: it fills the disk before it is rotated.
    tmpfs.fill_leaving("filler", 10 * MIB);
    get_json(&agent.app_url(8000, "/write?mb=100000&rate=20")).expect("the hog answers");
    assert!(
        wait_until(Duration::from_secs(60), || tmpfs.space().0 < MIB
            || said(&agent, "nearly full") > 0),
        "the hog's log did not fill the disk: {:?} free",
        tmpfs.space()
    );
    // Another deployment deploys (its checkout, its record, its route) while the hog writes.
    let web = GitRepo::new();
    web.commit_app("web", None);
    project
        .deployctl(&[
            "run",
            "web",
            "--env",
            ENV,
            "--repo",
            &web.url(),
            "--command",
            "python3 app.py",
            "--port",
            "8001",
            "--health-path",
            "/health",
        ])
        .ok();
    let seen = wait_for_json(&agent.app_url(8001, "/"), Duration::from_secs(10));
    assert_eq!(seen["marker"], "web");
    let record = agent.record("web").expect("web's record");
    assert_eq!(record["current"], 1, "{record:#}");
    let routes =
        std::fs::read_to_string(agent.data_dir.join("proxy/routes.json")).expect("routes.json");
    assert!(
        routes.contains(":8001"),
        "web's route is persisted: {routes}"
    );
    // A few seconds more of the hog: the low space is said once, not every second.
    let mut least_free = u64::MAX;
    wait_until(Duration::from_secs(4), || {
        least_free = least_free.min(tmpfs.space().0);
        false
    });
    let hog = get_json(&agent.app_url(8000, "/")).expect("the hog still answers");
    eprintln!("the hog wrote {hog}; the least free space seen after web's deploy: {least_free}");
    assert!(hog["written"].as_u64().unwrap_or(0) > 30_000_000, "{hog}");
    assert_eq!(said(&agent, "nearly full"), 1, "the low space is said once");
    assert!(
        said(&agent, "cannot rotate") <= 1,
        "rotation trouble is not said every second"
    );
    assert!(agent.record("hog").is_some_and(|r| r["current"] == 1));
}

#[test]
fn a_checkout_on_a_full_disk_says_so_and_keeps_the_mirror() {
    let ip = loopback();
    let (tmpfs, agent) = agent_on_tmpfs(&ip, "64m", "");
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("v1", None);
    // Files that take room in a checkout.
    for i in 0..4 {
        let blob: String = (0..80_000)
            .map(|n| format!("{i} {n:06} filler\n"))
            .collect();
        repo.write(&format!("data/{i}.txt"), &blob);
    }
    repo.commit("data");
    let run = || {
        project.deployctl(&[
            "run",
            "web",
            "--env",
            ENV,
            "--repo",
            &repo.url(),
            "--command",
            "python3 app.py",
            "--health-path",
            "/health",
        ])
    };
    run().ok();
    tmpfs.fill_leaving("filler", 0);
    let out = run();
    assert_ne!(out.code, 0, "{out}");
    out.mentions("no space left on the file system of")
        .mentions("releases/2")
        .mentions("free of");
    assert_eq!(said(&agent, "released the agent's space reserve"), 1);
    assert_eq!(said(&agent, "nearly full"), 1);
    let log = strip_ansi(&agent.stderr());
    assert!(
        !log.contains("cloning the mirror again"),
        "the mirror was cloned again"
    );
    assert!(
        !log.contains("mirror failed"),
        "the mirror was cloned again"
    );
    // The failed deploy's record was written on the full disk (the agent's reserve).
    assert!(
        agent
            .record("web")
            .is_some_and(|r| r["failed_deploy"]["step"] == "checkout"),
        "{:?}",
        agent.record("web")
    );
    let seen = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(seen["marker"], "v1", "release 1 keeps serving");
    // With room again, the same mirror deploys.
    std::fs::remove_file(agent.data_dir.join("filler")).expect("removing the filler");
    run().ok();
}

#[test]
fn a_release_directory_no_record_names_goes_when_the_agent_starts() {
    let ip = loopback();
    let mut agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("v1", None);
    project
        .deployctl(&[
            "run",
            "web",
            "--env",
            ENV,
            "--repo",
            &repo.url(),
            "--command",
            "python3 app.py",
            "--health-path",
            "/health",
        ])
        .ok();
    agent.kill9();
    // What an agent killed during release 2's packages step leaves: its checkout.
    let releases = agent.deployment_dir("web").join("releases");
    std::fs::create_dir_all(releases.join("2/src")).unwrap();
    std::fs::write(releases.join("2/app.py"), "print('half a release')\n").unwrap();
    agent.restart();
    assert!(
        wait_until(Duration::from_secs(10), || !releases.join("2").exists()),
        "releases/2, which no record names, is still there"
    );
    assert!(releases.join("1").is_dir(), "release 1 stays");
    let seen = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(seen["marker"], "v1");
}
