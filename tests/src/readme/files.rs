//! The files the README shows, compared with the real ones.

use std::fs;
use std::path::Path;

use super::Block;
use crate::{agent_bin, deployctl_bin};

/// The files the README shows: the config sample has every key `deploy-agent --help`
/// lists and no other; the unit's lines are the unit's; the declaration sample in "Files"
/// has every field `deployctl types deployment process` lists.
pub fn check_files(blocks: &[Block], repo_root: &Path) {
    let help = std::process::Command::new(agent_bin())
        .arg("--help")
        .output()
        .expect("deploy-agent --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let help_keys: Vec<String> = help
        .split("Config file keys")
        .nth(1)
        .unwrap_or("")
        .lines()
        // "  key = default   what it does"; "  tls_cert, tls_key = ..." names two.
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_once(" = ").map(|(keys, _)| keys.to_string()))
        .flat_map(|keys| {
            keys.split(',')
                .map(|k| k.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        help_keys.len() > 15,
        "keys in deploy-agent --help: {help_keys:?}"
    );
    let toml = blocks
        .iter()
        .find(|b| b.lang == "toml")
        .expect("the config sample");
    let sample_keys: Vec<String> = toml
        .text
        .lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_string()))
        .collect();
    for k in &help_keys {
        assert!(
            sample_keys.contains(k),
            "README's config sample lacks {k} (deploy-agent --help lists it)"
        );
    }
    for k in &sample_keys {
        assert!(
            help_keys.contains(k),
            "README's config sample has {k}, which deploy-agent --help does not list"
        );
    }

    let unit = fs::read_to_string(repo_root.join("scripts/deploy-agent.service"))
        .expect("reading scripts/deploy-agent.service");
    let ini = blocks
        .iter()
        .find(|b| b.lang == "ini")
        .expect("the unit sample");
    for line in ini.text.lines() {
        let setting = line.split('#').next().unwrap_or("").trim();
        assert!(
            setting.is_empty() || unit.lines().any(|l| l.trim() == setting),
            "README's unit has {setting:?}, which scripts/deploy-agent.service does not"
        );
    }

    let types = std::process::Command::new(deployctl_bin())
        .args(["types", "deployment", "process"])
        .output()
        .expect("deployctl types");
    let types = String::from_utf8_lossy(&types.stdout).into_owned();
    let decl = blocks
        .iter()
        .find(|b| b.lang == "yaml" && b.text.starts_with("object_type: deployment"))
        .expect("the declaration sample in Files");
    for field in types
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        if field == "packages.conda" {
            continue; // refused by the agent: not part of the sample
        }
        let leaf = field.rsplit('.').next().unwrap_or(field);
        assert!(
            decl.text.contains(&format!("{leaf}:")),
            "README's Files sample lacks {field} (deployctl types deployment process lists it)"
        );
    }
}
