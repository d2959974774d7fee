//! A lost state loses no running deployment: `state rebuild` brings back each entry from
//! what the agents keep (owner, env, declaration as deployed, instances, every release
//! with its number, ref, commit, packages hash and result, merged across the env's
//! agents) without touching what runs; `history`, `rollback` and `env set` work as before.
//! The file backend, etcd and S3 (moto).

use deployctl_e2e::*;
use serde_json::Value;

/// What a release is, whoever recorded it: number, ref, commit, packages hash, result,
/// whether current, and each agent's release number and result.
fn essentials(releases: &[Value]) -> Vec<Value> {
    releases
        .iter()
        .map(|r| {
            serde_json::json!([
                r["number"],
                r["ref"],
                r["commit"],
                r["packages_hash"],
                r["result"],
                r["current"],
                r["agents"]
            ])
        })
        .collect()
}

/// iris as `list` shows it: env, owner, repo, ref, instances, last result.
fn listed(project: &Project) -> Value {
    let out = project.deployctl(&["list", "--output", "json"]);
    out.ok();
    let entry = out.json()["deployments"][0].clone();
    assert_eq!(entry["name"], "iris", "{out}");
    assert!(
        !entry["owner"].as_str().unwrap_or_default().is_empty(),
        "{out}"
    );
    entry
}

/// Every instance of iris runs release `release`, of `commit`, healthy.
fn runs(project: &Project, release: u64, commit: &str) {
    let (_, dep) = project.status_json("iris");
    for i in dep["instances"].as_array().expect("instances") {
        assert_eq!(i["release"], release, "{dep:#}");
        assert_eq!(i["commit"], commit, "{dep:#}");
        assert_eq!(i["state"], "healthy", "{dep:#}");
    }
}

/// Two agents, one env; iris deployed three times (v1, v2, v3); the state lost by `lose`;
/// `state rebuild ARGS`; then history, rollback and env set.
fn lose_and_rebuild(project: &Project, agents: &[&Agent], lose: impl Fn(), args: &[&str]) {
    let repo = GitRepo::new();
    let mut commits = Vec::new();
    for tag in ["v1", "v2", "v3"] {
        commits.push(repo.commit_app(tag, Some(tag)));
        project
            .run_app("e2e", "iris", &repo.url(), tag, &["--port", "8000"])
            .ok();
    }
    let before = project.history("iris");
    assert_eq!(before.len(), 3, "{before:#?}");
    let listed_before = listed(project);
    let pids: Vec<Vec<u32>> = agents.iter().map(|a| a.app_pids()).collect();

    lose();
    project
        .deployctl(&["history", "iris"])
        .expect_code(1)
        .mentions("not found");
    let mut rebuild = vec!["state", "rebuild"];
    rebuild.extend_from_slice(args);
    project
        .deployctl(&rebuild)
        .ok()
        .mentions("1 deployment(s) added")
        .mentions("iris: 3 releases from 2 agents, current 3");

    // The history is back, numbered as the agents number it, each agent's release in it.
    let after = project.history("iris");
    assert_eq!(essentials(&after), essentials(&before), "{after:#?}");
    for (r, commit) in after.iter().zip(&commits) {
        assert_eq!(&r["commit"], commit.as_str());
        for a in agents {
            assert_eq!(r["agents"][a.address()]["result"], "ok", "{r:#}");
        }
    }
    project
        .deployctl(&["history", "iris"])
        .ok()
        .mentions("rebuilt from the agents' records");
    // Its env, owner, declaration's repo and ref, instances are back; nothing that runs
    // was touched.
    assert_eq!(listed(project), listed_before);
    assert_eq!(listed_before["env"], "e2e");
    let now: Vec<Vec<u32>> = agents.iter().map(|a| a.app_pids()).collect();
    assert_eq!(now, pids, "the rebuild restarted an app");

    // Again: the state has it all, nothing is added or changed.
    project
        .deployctl(&rebuild)
        .ok()
        .mentions("0 deployment(s) added, 1 updated")
        .mentions("iris: the state has every release its 2 agents keep");
    assert_eq!(project.history("iris"), after);

    // Rollback goes back to release 2, exactly its commit, on both agents.
    project
        .deployctl(&["rollback", "iris"])
        .ok()
        .mentions("back to release 2");
    runs(project, 4, &commits[1]);
    // env set redeploys the running release with the variable.
    project
        .deployctl(&["env", "set", "iris", "MODE=fast"])
        .ok()
        .mentions("same commit");
    runs(project, 5, &commits[1]);
    let numbers: Vec<u64> = project
        .history("iris")
        .iter()
        .filter_map(|h| h["number"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
}

#[test]
fn a_deleted_state_file_is_rebuilt_from_the_agents() {
    let (ip1, ip2) = (loopback(), loopback());
    let (a, mut b) = (Agent::start(&ip1), Agent::start(&ip2));
    let project = Project::for_agents("e2e", &[&a, &b]);
    let lose =
        || std::fs::remove_file(project.path().join(".deployctl/state.json")).expect("state file");
    lose_and_rebuild(&project, &[&a, &b], lose, &[]);
    // An env that is not declared is bad input.
    project
        .deployctl(&["state", "rebuild", "--env", "nope"])
        .expect_code(2);

    // An agent that does not answer is named, and the exit says the state is not whole;
    // what the other keeps is written.
    b.terminate();
    lose();
    project
        .deployctl(&["state", "rebuild"])
        .expect_code(1)
        .mentions("iris: 5 releases from 1 agent, current 5")
        .mentions(&format!("{} did not answer", b.address()))
        .mentions("run `deployctl state rebuild` again");
    assert_eq!(project.history("iris").len(), 5);
}

#[test]
fn a_deleted_etcd_state_is_rebuilt_from_the_agents() {
    let etcd_ip = loopback();
    let etcd = Etcd::start(&etcd_ip);
    let (ip1, ip2) = (loopback(), loopback());
    let (a, b) = (Agent::start(&ip1), Agent::start(&ip2));
    let project = Project::for_agents("e2e", &[&a, &b]);
    project
        .deployctl(&["config", "set", "core.state.uri", &etcd.uri("team")])
        .ok();
    // Every key under the prefix deleted, through etcd's own HTTP gateway.
    let lose = || {
        let body = format!(
            r#"{{"key":"{}","range_end":"{}"}}"#,
            base64("/team/deployments/"),
            base64("/team/deployments0")
        );
        let url = format!("http://{}/v3/kv/deleterange", etcd.client);
        let (code, reply) = http_post(&url, &body).expect("etcd answers");
        assert_eq!(code, 200, "{reply}");
        assert!(reply.contains("\"deleted\":\"1\""), "{reply}");
    };
    lose_and_rebuild(&project, &[&a, &b], lose, &["--env", "e2e"]);
    assert!(!project.path().join(".deployctl/state.json").exists());
}

#[test]
fn a_deleted_s3_state_is_rebuilt_from_the_agents() {
    let moto = Moto::start(&loopback());
    moto.create_bucket("team");
    let (ip1, ip2) = (loopback(), loopback());
    let (a, b) = (Agent::start(&ip1), Agent::start(&ip2));
    let project = Project::for_agents("e2e", &[&a, &b]);
    project.set_env(&moto.credentials());
    project
        .deployctl(&["config", "set", "core.state.endpoint", &moto.endpoint])
        .ok();
    project
        .deployctl(&["config", "set", "core.state.uri", "s3://team/ml"])
        .ok();
    let lose = || {
        assert!(
            moto.object("team", "ml/state.json").is_some(),
            "the state is in S3"
        );
        moto.delete_object("team", "ml/state.json");
    };
    lose_and_rebuild(&project, &[&a, &b], lose, &["--env", "e2e"]);
    assert!(!project.path().join(".deployctl/state.json").exists());
}

/// Alice's and Carol's deployments on one agent, one shared state file, lost: each one's
/// rebuild brings back what they may see, nothing of the other's.
#[test]
fn a_rebuild_brings_back_only_what_the_caller_may_see() {
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "carol"], &[], "");
    let shared = shared_dir();
    let file = shared.path().join("state.json");
    let team: Vec<Project> = ["alice", "carol"]
        .iter()
        .map(|u| {
            let p = s.project_as(Some(u));
            let uri = file.to_string_lossy();
            p.write(
                ".deployctl.yaml",
                &format!("core:\n  default_env: e2e\n  state:\n    uri: {uri}\n"),
            );
            p
        })
        .collect();
    let (alice, carol) = (&team[0], &team[1]);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    let (url, port) = (repo.url(), ["--port", "8001"]);
    alice.run_app("e2e", "iris-alice", &url, "v1", &[]).ok();
    carol.run_app("e2e", "iris-carol", &url, "v1", &port).ok();
    std::fs::remove_file(&file).expect("the shared state file");

    let out = carol.deployctl(&["state", "rebuild"]);
    out.ok()
        .mentions("1 deployment(s) added")
        .mentions("iris-carol: 1 release from 1 agent, current 1");
    assert!(!out.all().contains("iris-alice"), "{out}");
    alice.deployctl(&["history", "iris-alice"]).expect_code(1);
    let carols = carol.history("iris-carol");

    alice
        .deployctl(&["state", "rebuild"])
        .ok()
        .mentions("1 deployment(s) added, 0 updated")
        .mentions("iris-alice: 1 release from 1 agent, current 1");
    assert_eq!(alice.history("iris-alice").len(), 1);
    assert_eq!(carol.history("iris-carol"), carols);
}

/// Standard base64 with padding (etcd's JSON gateway takes keys so).
fn base64(text: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
