//! The node's page for people: a real browser (headless Chromium) renders every deployment
//! with its state, the page refreshes itself from /dashboard.json, values are escaped, and
//! with authentication on it shows names and states only until a token is given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

fn chromium() -> PathBuf {
    require_tool(
        "chromium",
        "Debian's chromium package (scripts/test.sh installs it)",
    )
}

/// Headless Chromium on `url` with `extra` flags; its stdout.
fn headless(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where tests leave files for people to look at.
fn artifacts() -> PathBuf {
    let dir = target_dir().join("e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `<tr>` of `name` in a dumped DOM.
fn row_of<'a>(dom: &'a str, name: &str) -> &'a str {
    let cell = format!(">{name}</");
    let at = dom
        .find(&cell)
        .unwrap_or_else(|| panic!("no row for {name}:\n{dom}"));
    let start = dom[..at].rfind("<tr").unwrap_or(0);
    let end = dom[at..].find("</tr>").map(|e| at + e).unwrap_or(dom.len());
    &dom[start..end]
}

#[test]
fn a_browser_shows_every_deployment_and_its_state() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write(
        "app.py",
        &format!(
            "print('<script>alert(1)</script> in a log line', flush=True)\n{}",
            app_py("dashboard")
        ),
    );
    repo.commit("app that logs markup");
    repo.tag("v1");
    project.run_app(ENV, "web", &repo.url(), "v1", &[]).ok();
    let crashy = GitRepo::new();
    crashy.write("app.py", CRASH_AFTER_PY);
    crashy.commit("crashes");
    crashy.tag("v1");
    project
        .run_app(
            ENV,
            "crashy",
            &crashy.url(),
            "v1",
            &[
                "--port",
                "8001",
                "--restart",
                "on-failure",
                "--env-var",
                "CRASH_AFTER=0.3",
            ],
        )
        .ok();
    // Crash-looping: it has restarted at least once.
    assert!(wait_until(Duration::from_secs(20), || {
        let (_, v) = project.status_json("crashy");
        v["instances"][0]["restarts"].as_u64().unwrap_or(0) >= 1
    }));

    let url = agent.http_url("/");
    let dom = headless(&url, &["--virtual-time-budget=4000", "--dump-dom"]);
    let web = row_of(&dom, "web");
    assert!(web.contains(">healthy<"), "{web}");
    assert!(web.contains("v1"), "{web}");
    assert!(web.contains(&format!("http://{ip}:8000")), "{web}");
    // The last deploy's steps with their durations.
    assert!(
        web.contains("ok in ") && web.contains("checkout ") && web.contains("health "),
        "{web}"
    );
    let crashy_row = row_of(&dom, "crashy");
    assert!(crashy_row.contains("badge"), "{crashy_row}");
    // Why it last restarted, as the script renders it.
    assert!(
        crashy_row.contains("restarted: the app exited with code 3"),
        "{crashy_row}"
    );
    // The script ran and refreshed the table from /dashboard.json (its nonce let it run).
    assert!(
        dom.contains("data-refreshed="),
        "the page did not refresh itself:\n{dom}"
    );
    // Only its own script runs, and no other site may frame it (it holds a token form).
    let head = http_get_with(&url, &[]).expect("the page answers");
    let policy = head.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("script-src 'nonce-") && policy.contains("frame-ancestors 'none'"),
        "{}",
        head.head
    );
    assert_eq!(
        head.header("x-frame-options"),
        Some("DENY"),
        "{}",
        head.head
    );

    // A deployment's page: its history, and its output with the markup shown as text.
    let page = headless(&agent.http_url("/deployments/web"), &["--dump-dom"]);
    assert!(page.contains("v1"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; in a log line"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"), "{page}");
    let crash_page = http_get(&agent.http_url("/deployments/crashy")).unwrap().1;
    assert!(
        crash_page.contains("crashy exits with code 3"),
        "{crash_page}"
    );

    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &url,
        &[
            "--virtual-time-budget=3000",
            "--window-size=1400,360",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());
    if let Ok(dest) = std::env::var("DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(&dest)).unwrap();
    }
}

#[test]
fn without_a_token_the_page_shows_names_and_states_only() {
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "bob"], &[], "");
    let alice = s.project_as(Some("alice"));
    let repo = GitRepo::new();
    let commit = repo.commit_app("ledger", Some("v1"));
    alice.run_app("e2e", "ledger", &repo.url(), "v1", &[]).ok();
    let page = s.agent.http_url("/");
    let json = s.agent.http_url("/dashboard.json");

    let anonymous = http_get(&page).expect("the page answers");
    assert_eq!(anonymous.0, 200);
    assert!(anonymous.1.contains("<td>ledger</td>"), "{}", anonymous.1);
    assert!(anonymous.1.contains("requires a token"), "{}", anonymous.1);
    assert!(
        !anonymous.1.contains(&commit[..10]),
        "the commit shows without a token"
    );
    let data = http_get(&json).unwrap().1;
    assert!(
        data.contains("\"limited\":true") && !data.contains(&commit[..10]),
        "{data}"
    );

    let bearer = |user: &str| format!("Bearer {}", s.tokens[user]);
    let bob = http_get_with(&json, &[("Authorization", &bearer("bob"))]).unwrap();
    assert!(
        !bob.body.contains(&commit[..10]),
        "bob sees alice's deployment: {}",
        bob.body
    );
    let alice_sees = http_get_with(&json, &[("Authorization", &bearer("alice"))]).unwrap();
    assert!(alice_sees.body.contains(&commit), "{}", alice_sees.body);
    let alice_page = http_get_with(&page, &[("Authorization", &bearer("alice"))]).unwrap();
    assert!(
        alice_page.body.contains(&commit[..10]),
        "{}",
        alice_page.body
    );

    // A deployment's page: its history and logs for its owner only.
    let detail = s.agent.http_url("/deployments/ledger");
    let anon = http_get(&detail).unwrap().1;
    assert!(
        anon.contains("Not shown") && !anon.contains(&commit[..10]),
        "{anon}"
    );
    let detail_json = s.agent.http_url("/deployments/ledger/detail.json");
    let bob = http_get_with(&detail_json, &[("Authorization", &bearer("bob"))]).unwrap();
    assert_eq!(bob.status, 404, "{}", bob.body);
    let alice = http_get_with(&detail_json, &[("Authorization", &bearer("alice"))]).unwrap();
    assert_eq!(alice.status, 200, "{}", alice.body);
    assert!(
        alice.body.contains(&commit) && alice.body.contains("listening on"),
        "{}",
        alice.body
    );
}

/// `deployctl dashboard --listen 127.0.0.1:0` in the background, and the URL it prints;
/// killed when dropped.
struct Dashboard {
    child: std::process::Child,
    url: String,
}

impl Dashboard {
    /// `PATH` on the dashboard, with its secret.
    fn at(&self, path: &str) -> String {
        let (base, query) = self.url.split_once('?').unwrap_or((&self.url, ""));
        format!("{base}{path}?{query}")
    }

    fn start(project: &Project, extra: &[&str]) -> Dashboard {
        use std::io::BufRead;
        let mut child = Command::new(deployctl_bin())
            .arg("--project")
            .arg(project.path())
            .args(["dashboard", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        Dashboard { child, url }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn deployctl_dashboard_shows_the_fleet_one_cell_per_agent_and_a_deployment_page() {
    let (ip1, ip2) = (loopback(), loopback());
    let (a1, a2) = (Agent::start(&ip1), Agent::start(&ip2));
    let project = Project::for_agents(ENV, &[&a1, &a2]);
    project.declare_env("solo", &a1);
    let repo = GitRepo::new();
    repo.write(
        "app.py",
        &format!(
            "print('<script>alert(1)</script> in a log line', flush=True)\n{}",
            app_py("fleet")
        ),
    );
    repo.commit("app that logs markup");
    repo.tag("v1");
    project.run_app(ENV, "web", &repo.url(), "v1", &[]).ok();
    project
        .run_app("solo", "half", &repo.url(), "v1", &["--port", "8001"])
        .ok();

    let d = Dashboard::start(&project, &[]);
    let dom = headless(&d.url, &["--virtual-time-budget=4000", "--dump-dom"]);
    // One cell per agent: web on both, half on one (the other cell empty).
    assert_eq!(row_of(&dom, "web").matches(">healthy<").count(), 2, "{dom}");
    let half = row_of(&dom, "half");
    assert_eq!(half.matches(">healthy<").count(), 1, "{half}");
    assert!(half.contains("absent"), "{half}");
    assert!(
        dom.contains("data-refreshed="),
        "the page did not refresh itself:\n{dom}"
    );
    let shot = artifacts().join("fleet.png");
    headless(
        &d.url,
        &[
            "--virtual-time-budget=3000",
            "--window-size=1200,300",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(shot.is_file());

    // A deployment's page: its history and the tail of its logs, the markup as text.
    let page = headless(&d.at("deployment/web"), &["--dump-dom"]);
    assert!(page.contains("v1"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; in a log line"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"), "{page}");

    // Only this address, with the secret the printed URL carries: a page elsewhere cannot
    // read it through DNS rebinding (another Host), nor without the secret.
    let base = d.url.split('?').next().unwrap_or_default().to_string();
    let data = format!("{base}data.json");
    let rebound = http_get_with(&d.at("data.json"), &[("Host", "evil.example")]).unwrap();
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert!(!rebound.body.contains("web"), "{}", rebound.body);
    let anonymous = http_get(&data).unwrap();
    assert_eq!(anonymous.0, 403, "{}", anonymous.1);
    assert!(anonymous.1.contains("?token="), "{}", anonymous.1);
    let first = http_get_with(&d.url, &[]).unwrap();
    let cookie = first.header("set-cookie").unwrap_or_default().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default();
    let with_cookie = http_get_with(&data, &[("Cookie", pair)]).unwrap();
    assert_eq!(with_cookie.status, 200);
    assert!(with_cookie.body.contains("\"web\""), "{}", with_cookie.body);
    assert!(first
        .header("content-security-policy")
        .is_some_and(|p| p.contains("frame-ancestors 'none'")));

    // Not on loopback: refused, naming the flag.
    project
        .deployctl(&["dashboard", "--listen", "0.0.0.0:0"])
        .expect_code(2)
        .mentions("--listen");
}
