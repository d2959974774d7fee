//! The node-side admin commands of `deploy-agent` (init, user, group): files only, no
//! server. Each names the file it changed.

use std::path::PathBuf;

use anyhow::Context;

use deploy_agent::config::Config;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a CA, this agent's TLS certificate and a first admin user, and print how to
    /// set up deployctl. Run once per node; again, it keeps the CA and issues a new
    /// certificate and a new token for the admin user.
    Init {
        /// A name deployctl reaches the agent by (DNS name or IP address; repeatable)
        /// [default: this host's name, localhost, 127.0.0.1]
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// The first admin user
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Only issue this node's certificate, from the CA already in DATA/tls (ca.pem and
        /// ca.key copied from the first node), and leave users alone: for the further nodes
        /// of a fleet, which share one CA (one ca_file) and one auth.toml (the same tokens)
        #[arg(long)]
        cert_only: bool,
    },
    /// Manage users (bearer tokens; only their hashes are stored)
    #[command(subcommand)]
    User(UserCmd),
    /// Manage groups (owners of deployments and secrets)
    #[command(subcommand)]
    Group(GroupCmd),
    /// The node proxy (started by the agent itself, in a session of its own): holds the
    /// deployments' public ports and forwards to their instances
    #[command(hide = true)]
    Proxy {
        /// The control socket the agent sets routes on
        #[arg(long, value_name = "PATH")]
        control: PathBuf,
        /// Where the routes are persisted
        #[arg(long, value_name = "PATH")]
        routes: PathBuf,
        /// A listening socket inherited from the agent (its descriptor), served when a
        /// route for its address comes
        #[arg(long = "listen-fd", value_name = "FD")]
        listen_fds: Vec<i32>,
        /// Threads that serve the routes [default: half the cores, at least 1]
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum UserCmd {
    /// Add a user, or give an existing one a new token; prints the token once
    Add {
        name: String,
        /// May see and manage everything
        #[arg(long)]
        admin: bool,
        /// The token stops working after this long (e.g. 90d)
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Remove a user (its token stops working at once)
    Rm { name: String },
    /// List users and groups
    List,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum GroupCmd {
    /// Create a group, or add members to it
    Add {
        name: String,
        #[arg(long = "member", value_name = "USER")]
        members: Vec<String>,
    },
    /// Remove members from a group, or the group when no member is named
    Rm {
        name: String,
        #[arg(long = "member", value_name = "USER")]
        members: Vec<String>,
    },
}

/// The node-side admin commands: files only, no server. `found` says how the files were
/// found (for hints that find them again); each command names the file it changed. Long on
/// purpose: one short arm per command, each printing what it changed.
pub(crate) fn admin(
    command: Command,
    config: &Config,
    found: &deploy_agent::admin::Found,
    auth_file_flag: bool,
) -> anyhow::Result<()> {
    use deploy_agent::admin;
    let auth = config.auth_path();
    let file = auth.display();
    match command {
        Command::Init {
            mut names,
            admin,
            cert_only,
        } => {
            if names.is_empty() {
                names = vec![
                    deploy_agent::hostname(),
                    "localhost".into(),
                    "127.0.0.1".into(),
                ];
            }
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            if cert_only {
                let ca = admin::init_cert_only(&config.data_dir, &names)?;
                print!("{}", admin::cert_only_message(&ca, &auth, &names)?);
                return Ok(());
            }
            let done = admin::init(&config.data_dir, &auth, &names, &admin)?;
            let cmd = found.command(config, auth_file_flag);
            print!("{}", admin::init_message(&done, config, &names, &cmd));
        }
        Command::User(UserCmd::Add {
            name,
            admin: is_admin,
            expires,
        }) => {
            let expires = match expires {
                Some(e) => Some(
                    humantime::parse_duration(&e)
                        .with_context(|| format!("--expires: {e:?} is not a duration like 90d"))?,
                ),
                None => None,
            };
            let verb = match admin::has_user(&auth, &name)? {
                true => "gave user {name} a new token in",
                false => "added user {name} to",
            };
            let token = admin::user_add(&auth, &name, is_admin, expires)?;
            let verb = verb.replace("{name}", &name);
            println!("{verb} {file}; its token (shown only now):\n{token}");
        }
        Command::User(UserCmd::Rm { name }) => {
            admin::user_remove(&auth, &name)?;
            println!("removed user {name} from {file}; its token no longer works");
        }
        Command::User(UserCmd::List) => {
            let list = admin::describe(&auth)?;
            print!("users and groups in {file}:\n{list}");
        }
        Command::Group(GroupCmd::Add { name, members }) => {
            admin::group_add(&auth, &name, &members)?;
            println!(
                "group {name} in {file}: added {}",
                if members.is_empty() {
                    "nobody".into()
                } else {
                    members.join(", ")
                }
            );
        }
        Command::Group(GroupCmd::Rm { name, members }) => {
            admin::group_remove(&auth, &name, &members)?;
            println!(
                "group {name} in {file}: removed {}",
                if members.is_empty() {
                    "the group".into()
                } else {
                    members.join(", ")
                }
            );
        }
        Command::Proxy { .. } => anyhow::bail!("the node proxy is started by the agent"),
    }
    Ok(())
}
