//! An agent with TLS and users, as a team runs it: `deploy-agent init`, `user add` and
//! `group add` on its data directory, and projects that reach it as one of those users.

use std::collections::HashMap;

use crate::{agent_admin, token_in, Agent, Project};

/// An agent with TLS and users made by `deploy-agent init` / `user add` / `group add`.
pub struct Secure {
    pub agent: Agent,
    /// user → token; "admin" is the first admin.
    pub tokens: HashMap<String, String>,
}

/// As root (CI, the development machines) each deployment runs as its own user; an agent
/// not run as root needs `apps_as_agent_user = true` to run apps as itself with users, so
/// that is set unless `config` sets `run_as` (ignored, with a warning, by a root agent).
pub fn secure_agent(ip: &str, users: &[&str], groups: &[(&str, &[&str])], config: &str) -> Secure {
    let mut tokens = HashMap::new();
    let config = if config.contains("run_as") {
        config.to_string()
    } else {
        format!("apps_as_agent_user = true\n{config}")
    };
    let agent = Agent::start_prepared(ip, &config, &[], |dir| {
        let out = agent_admin(dir, &["init", "--name", ip]);
        tokens.insert("admin".to_string(), token_in(&out));
        for u in users {
            let out = agent_admin(dir, &["user", "add", u]);
            tokens.insert(u.to_string(), token_in(&out));
        }
        for (g, members) in groups {
            let mut args = vec!["group", "add", g];
            for m in *members {
                args.push("--member");
                args.push(m);
            }
            agent_admin(dir, &args);
        }
    });
    Secure { agent, tokens }
}

impl Secure {
    /// A project whose default env reaches the agent over TLS as `user` (no token: None;
    /// a name without a token here is used as the token itself).
    pub fn project_as(&self, user: Option<&str>) -> Project {
        let token = user.map(|u| self.tokens.get(u).cloned().unwrap_or_else(|| u.to_string()));
        self.project(token.as_deref())
    }

    pub fn project_with_token(&self, token: &str) -> Project {
        self.project(Some(token))
    }

    pub fn project(&self, token: Option<&str>) -> Project {
        let p = Project::new();
        self.declare(&p, "e2e", token);
        p.write(".deployctl.yaml", "core:\n  default_env: e2e\n");
        p
    }

    pub fn declare(&self, p: &Project, env: &str, token: Option<&str>) {
        let ca = self.agent.data_dir.join("tls/ca.pem");
        let address = format!("https://{}", self.agent.grpc);
        let mut args = vec![
            "declare".to_string(),
            "env".into(),
            "agent".into(),
            env.into(),
            "--address".into(),
            address,
            "--ca-file".into(),
            ca.to_string_lossy().into_owned(),
        ];
        if let Some(token) = token {
            let file = format!("{env}.token");
            p.write(&file, token);
            args.push("--token-file".into());
            args.push(p.path().join(&file).to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        p.deployctl(&args).ok();
    }
}
