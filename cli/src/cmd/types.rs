//! `types [env|deployment] [TYPE]`: the available types and each one's options with their
//! defaults. The options are read from the same clap definitions that parse the flags
//! (`DeployFlags`, `declare env`), so this list cannot drift from what the parser accepts.

use clap::{Args as _, Subcommand as _};
use serde_json::json;

use super::declare::Declare;
use super::flags::DeployFlags;
use crate::error::bad_input;
use crate::output::{self, Format};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// env or deployment
    pub object: Option<String>,
    /// A type of that object (env: agent, fleet; deployment: process)
    #[arg(value_name = "TYPE")]
    pub kind: Option<String>,
}

/// One option of a type.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// The declaration field, dotted for nested ones (`health.timeout`).
    pub field: String,
    pub flag: String,
    pub default: String,
    pub help: String,
}

/// The field a flag sets: `--health-timeout` → `health.timeout`, `--pip` → `packages.pip`.
fn field_of(flag: &str) -> String {
    match flag {
        "pip" | "apt" => format!("packages.{flag}"),
        "env-var" => "env_vars".into(),
        "secret" => "secrets".into(),
        "artifact" => "artifacts".into(),
        "startup-timeout" | "unhealthy-after" | "restart-after" => {
            format!("health.{}", flag.replace('-', "_"))
        }
        "address" => "addresses".into(),
        "target-in-flight" => "replicas.target_in_flight".into(),
        "memory" | "cpus" | "pids" | "gpus" | "build-memory" => {
            format!("resources.{}", flag.replace('-', "_"))
        }
        f => match f.strip_prefix("health-") {
            Some(rest) => format!("health.{rest}"),
            None => f.replace('-', "_"),
        },
    }
}

fn fields_of(cmd: &clap::Command) -> Vec<Field> {
    cmd.get_arguments()
        .filter_map(|a| {
            let flag = a.get_long()?.to_string();
            if flag == "help" {
                return None;
            }
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            let (help, default) = match help.rsplit_once(" [default: ") {
                Some((h, d)) => (h.to_string(), d.trim_end_matches(']').to_string()),
                None => (help, String::new()),
            };
            Some(Field {
                field: field_of(&flag),
                flag: format!("--{flag}"),
                default,
                help,
            })
        })
        .collect()
}

/// The options of `deployment process`: its flags, and `packages.conda`, a declaration
/// field without a flag (agents refuse it: they have no conda).
pub(crate) fn deployment_fields() -> Vec<Field> {
    let mut fields = fields_of(&DeployFlags::augment_args(clap::Command::new("deployment")));
    fields.push(Field {
        field: "packages.conda".into(),
        flag: String::new(),
        default: String::new(),
        help: "Conda packages: refused by deploy-agent, which does not use conda; use pip".into(),
    });
    // Replicas that follow the load: `--replicas MIN..MAX` sets replicas.min and .max.
    fields.push(Field {
        field: "replicas.scale_up_after".into(),
        flag: String::new(),
        default: "10s".into(),
        help: "With replicas {min, max}: how long the requests in flight per ready replica must stay above replicas.target_in_flight before the agent adds replicas (as many as the load needs, at most max)".into(),
    });
    fields.push(Field {
        field: "replicas.scale_down_after".into(),
        flag: String::new(),
        default: "60s".into(),
        help: "With replicas {min, max}: how long the load must stay low enough that one replica less would still be under the target before the agent removes one (drained, the last one first)".into(),
    });
    fields
}

/// The flags of `declare env` that only a fleet env takes.
const FLEET_ONLY: &[&str] = &["registry", "select", "count"];

/// The options of `env agent` or `env fleet`.
pub(crate) fn env_fields(kind: &str) -> Vec<Field> {
    let cmd = Declare::augment_subcommands(clap::Command::new("declare"));
    let fields = cmd
        .find_subcommand("env")
        .map(fields_of)
        .unwrap_or_default();
    fields
        .into_iter()
        .filter(|f| {
            let flag = f.flag.trim_start_matches("--");
            match kind {
                "fleet" => flag != "address",
                _ => !FLEET_ONLY.contains(&flag),
            }
        })
        .collect()
}

pub(crate) fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let object = args.object.as_deref();
    let kind = args.kind.as_deref();
    let fields = match (object, kind) {
        (None, _) => {
            return print_types(
                &[("env", &["agent", "fleet"]), ("deployment", &["process"])],
                format,
            )
        }
        (Some("env"), None) => return print_types(&[("env", &["agent", "fleet"])], format),
        (Some("deployment"), None) => return print_types(&[("deployment", &["process"])], format),
        (Some("env"), Some(k @ ("agent" | "fleet"))) => env_fields(k),
        (Some("deployment"), Some("process")) => deployment_fields(),
        (Some("env"), Some(k)) => {
            return Err(bad_input(format!(
                "TYPE: {k:?} is not an env type (available: agent, fleet)"
            )))
        }
        (Some("deployment"), Some(k)) => {
            return Err(bad_input(format!(
                "TYPE: {k:?} is not a deployment type (available: process)"
            )))
        }
        (Some(o), _) => {
            return Err(bad_input(format!(
                "{o:?} is not an object (available: env, deployment)"
            )))
        }
    };
    if format == Format::Json {
        let list: Vec<_> = fields
            .iter()
            .map(
                |f| json!({"field": f.field, "flag": f.flag, "default": f.default, "help": f.help}),
            )
            .collect();
        println!(
            "{}",
            json!({"object": object, "type": kind, "fields": list})
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| {
            vec![
                f.field.clone(),
                f.flag.clone(),
                if f.default.is_empty() {
                    "-".into()
                } else {
                    f.default.clone()
                },
                f.help.clone(),
            ]
        })
        .collect();
    output::table(&["FIELD", "FLAG", "DEFAULT", "DESCRIPTION"], &rows);
    Ok(())
}

fn print_types(types: &[(&str, &[&str])], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        let obj: serde_json::Map<String, serde_json::Value> = types
            .iter()
            .map(|(o, t)| (o.to_string(), json!(t)))
            .collect();
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    for (object, kinds) in types {
        println!("{object}: {}", kinds.join(", "));
    }
    if types.len() > 1 {
        println!(
            "\n`deployctl types deployment process` lists a type's options with their defaults."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decl::{Artifact, DeploymentDecl, EnvDecl, Health, Packages, Resources, Scalar};

    /// Every key a full declaration serialises to.
    fn keys(value: &serde_norway::Value, prefix: &str, out: &mut Vec<String>) {
        if let serde_norway::Value::Mapping(m) = value {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                let name = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                if matches!(k, "packages" | "health" | "resources")
                    || (k == "replicas" && v.is_mapping())
                {
                    keys(v, &name, out);
                } else {
                    out.push(name);
                }
            }
        }
    }

    #[test]
    fn every_deployment_field_is_listed() {
        let s = |v: &str| Some(v.to_string());
        let full = DeploymentDecl {
            object_type: "deployment".into(),
            kind: "process".into(),
            env: s("e"),
            repo: "r".into(),
            git_ref: s("v"),
            workdir: s("w"),
            command: "c".into(),
            packages: Packages {
                pip: vec!["a".into()],
                apt: vec!["b".into()],
                conda: vec!["c".into()],
            },
            requirements: s("r.txt"),
            start_script: s("s.sh"),
            env_vars: [("K".to_string(), Scalar::Text("V".into()))].into(),
            secrets: vec!["S".into()],
            port: Some(1),
            health: Health {
                path: s("/h"),
                startup_timeout: s("1s"),
                interval: s("1s"),
                unhealthy_after: Some(2),
                restart_after: Some(4),
            },
            apply_path: s("/p"),
            owner: s("user:u"),
            restart: s("never"),
            kill_timeout: s("1s"),
            strategy: s("recreate"),
            proxy: s("tcp"),
            drain_timeout: s("1s"),
            hold_timeout: s("1s"),
            idle_timeout: s("1s"),
            wake_timeout: s("1s"),
            replicas: Some(crate::decl::Replicas::Fixed(2)),
            python: s("3.11"),
            resources: Resources {
                memory: Some(Scalar::Text("4G".into())),
                cpus: Some(1.5),
                pids: Some(2048),
                gpus: Some(1),
                build_memory: Some(Scalar::Text("8G".into())),
            },
            artifacts: vec![Artifact {
                url: "https://m.example/m.pkl".into(),
                sha256: s("0".repeat(64).as_str()),
                path: "m.pkl".into(),
                extract: None,
            }],
            warmup: vec![crate::decl::Warmup::parse_flag("POST /p {}").unwrap()],
        };
        let mut all = Vec::new();
        keys(&serde_norway::to_value(&full).unwrap(), "", &mut all);
        // Replicas that follow the load: min and max are --replicas MIN..MAX.
        let auto = DeploymentDecl {
            replicas: Some(crate::decl::Replicas::Auto(crate::decl::Autoscale {
                min: Some(1),
                max: Some(4),
                target_in_flight: Some(2),
                scale_up_after: s("5s"),
                scale_down_after: s("30s"),
            })),
            ..Default::default()
        };
        let mut ranged = Vec::new();
        keys(&serde_norway::to_value(&auto).unwrap(), "", &mut ranged);
        all.extend(ranged.into_iter().filter(|k| {
            k.starts_with("replicas.") && !matches!(k.as_str(), "replicas.min" | "replicas.max")
        }));
        let listed: Vec<String> = deployment_fields().into_iter().map(|f| f.field).collect();
        for k in all
            .iter()
            .filter(|k| !matches!(k.as_str(), "object_type" | "type"))
        {
            assert!(
                listed.contains(k),
                "`types deployment process` misses {k}: {listed:?}"
            );
        }
        assert_eq!(listed.len(), all.len() - 2, "{listed:?} vs {all:?}");
    }

    #[test]
    fn every_env_field_is_listed() {
        let full = EnvDecl {
            object_type: "env".into(),
            kind: "agent".into(),
            addresses: vec!["http://h:1".into()],
            registry: Some("etcd://h:2379/p".into()),
            select: Some("zone=a".into()),
            count: Some(1),
            token_file: Some("t".into()),
            ca_file: Some("c".into()),
        };
        let mut all = Vec::new();
        keys(&serde_norway::to_value(&full).unwrap(), "", &mut all);
        let agent: Vec<String> = env_fields("agent").into_iter().map(|f| f.field).collect();
        let fleet: Vec<String> = env_fields("fleet").into_iter().map(|f| f.field).collect();
        assert!(agent.contains(&"addresses".to_string()) && !agent.contains(&"select".to_string()));
        assert!(
            fleet.contains(&"registry".to_string()) && !fleet.contains(&"addresses".to_string())
        );
        let listed: Vec<String> = agent.into_iter().chain(fleet).collect();
        for k in all
            .iter()
            .filter(|k| !matches!(k.as_str(), "object_type" | "type"))
        {
            assert!(
                listed.contains(k),
                "`types env agent` misses {k}: {listed:?}"
            );
        }
    }
}
