//! Switching `core.state.uri` to another backend says what the previous one holds and how
//! to copy it; `state copy` copies every deployment record (declaration, owner, instances,
//! the whole history), skips what the target has already, and refuses (writing nothing)
//! to overwrite a different record unless `--force`.

use deployctl_e2e::*;
use serde_json::Value;

/// The command between backticks in `text` that starts with `start`.
fn advice(text: &str, start: &str) -> String {
    text.split('`')
        .find(|part| part.starts_with(start))
        .unwrap_or_else(|| panic!("no `{start} ...` advice in:\n{text}"))
        .to_string()
}

#[test]
fn switching_to_etcd_offers_the_copy_and_state_copy_moves_every_record() {
    let etcd_ip = loopback();
    let etcd = Etcd::start(&etcd_ip);
    let (_ip, _agent, project, repo) = iris_deployed();
    project
        .run_app("e2e", "iris-ml", &repo.url(), "v1", &["--port", "8001"])
        .ok();
    repo.commit_app("two", Some("v2"));
    project
        .run_app("e2e", "iris", &repo.url(), "v2", &["--port", "8000"])
        .ok();
    let iris_in_file = project.history("iris");
    let ml_in_file = project.history("iris-ml");
    assert_eq!(iris_in_file.len(), 2);

    // The switch says what the previous state holds, and the command that copies it.
    let uri = etcd.uri("ml-team");
    let out = project.deployctl(&["config", "set", "core.state.uri", &uri]);
    out.ok()
        .mentions(&format!("core.state.uri: .deployctl/state.json → {uri}"))
        .mentions(&format!("{uri} holds no deployments"))
        .mentions(&format!(
            "the previous state (.deployctl/state.json) has 2 deployments (iris, iris-ml) that {uri} does not"
        ));
    let copy = advice(&out.stdout, "deployctl state copy");
    assert_eq!(copy, "deployctl state copy --from .deployctl/state.json");
    project
        .deployctl(&["history", "iris"])
        .expect_code(1)
        .mentions("not found");
    // The newcomer's way first: status --refresh puts the releases the agent keeps of
    // iris into etcd.
    project.deployctl(&["status", "iris", "--refresh"]).ok();
    assert_eq!(project.history("iris").len(), 2);

    // The advice works as printed, typed in the project directory; the copy replaces the
    // record the refresh rebuilt (it knew only what the agent keeps: no frozen versions).
    let args: Vec<&str> = copy.split_whitespace().skip(1).collect();
    project
        .deployctl_as_typed(&args)
        .ok()
        .mentions("copied iris (2 releases")
        .mentions("copied iris-ml (1 release)")
        .mentions("2 copied, 0 skipped");
    assert_eq!(project.history("iris"), iris_in_file);
    assert_eq!(project.history("iris-ml"), ml_in_file);
    assert!(
        !project.read(".deployctl.yaml").contains("state.json"),
        "the setting stays etcd"
    );

    // Again: nothing to do.
    project
        .deployctl(&["state", "copy", "--from", ".deployctl/state.json"])
        .ok()
        .mentions("skipped iris: already the same")
        .mentions("skipped iris-ml: already the same")
        .mentions("0 copied, 2 skipped");
    // From the configured state to itself: bad input, both flags named.
    project
        .deployctl(&["state", "copy"])
        .expect_code(2)
        .mentions("--from")
        .mentions("--to");

    // Deployed on since (etcd has the file's releases and one more): left as it is.
    project.deployctl(&["env", "set", "iris", "MODE=fast"]).ok();
    project
        .deployctl(&["state", "copy", "--from", ".deployctl/state.json"])
        .ok()
        .mentions("skipped iris: the target has its 2 releases and 1 more")
        .mentions("0 copied, 2 skipped");
    assert_eq!(project.history("iris").len(), 3);

    // A source whose record of iris differs: refused, nothing written, unless --force.
    project
        .deployctl(&["state", "copy", "--to", "other.json"])
        .ok()
        .mentions("2 copied");
    let mut doc: Value = serde_json::from_str(&project.read("other.json")).expect("JSON");
    let other_commit = "0".repeat(40);
    doc["deployments"]["iris"]["history"][2]["commit"] = Value::from(other_commit.as_str());
    doc["deployments"]["extra"] = doc["deployments"]["iris-ml"].clone();
    project.write("other.json", &doc.to_string());
    let before = project.history("iris");
    project
        .deployctl(&["state", "copy", "--from", "other.json"])
        .expect_code(1)
        .mentions("nothing was copied")
        .mentions("iris (3 releases there, 3 in other.json; they differ from release 3)")
        .mentions("--force");
    assert_eq!(project.history("iris"), before);
    project.deployctl(&["history", "extra"]).expect_code(1);
    project
        .deployctl(&["state", "copy", "--from", "other.json", "--force"])
        .ok()
        .mentions("replaced iris (3 releases;")
        .mentions("copied extra (1 release)")
        .mentions("skipped iris-ml: already the same")
        .mentions("1 copied, 1 replaced, 1 skipped");
    assert_eq!(project.history("iris")[2]["commit"], other_commit.as_str());
    assert_eq!(project.history("extra"), ml_in_file);
    // The file state was only read.
    assert_eq!(
        serde_json::from_str::<Value>(&project.read(".deployctl/state.json")).expect("JSON")
            ["deployments"]
            .as_object()
            .map(|d| d.len()),
        Some(2)
    );
}

#[test]
fn switching_to_an_etcd_that_does_not_answer_is_refused_unless_forced() {
    // Nothing listens on this address of the test's own.
    let down = loopback();
    let project = Project::new();
    let uri = format!("etcd://{down}:2379/team");
    project
        .deployctl(&["config", "set", "core.state.uri", &uri])
        .expect_code(1)
        .mentions(&uri)
        .mentions("unchanged")
        .mentions("--force");
    project
        .deployctl(&["config", "get", "core.state.uri"])
        .ok()
        .mentions(".deployctl/state.json");
    project
        .deployctl(&["config", "set", "core.state.uri", &uri, "--force"])
        .ok()
        .mentions(&format!("{uri} cannot be read"));
    project
        .deployctl(&["config", "get", "core.state.uri"])
        .ok()
        .mentions(&uri);
    // A file in a directory that does not exist yet: created.
    let out = project.deployctl(&["config", "set", "core.state.uri", "team/state.json"]);
    out.ok()
        .mentions(&format!("core.state.uri: {uri} → team/state.json"))
        .mentions("created the directory");
    assert!(project.path().join("team").is_dir());
    // The previous state could not be read: said, and the switch stands.
    out.mentions(&format!("the previous state ({uri}) cannot be read"));
}
