//! `apply NAME DATA`: POST DATA (JSON text, or `@file`) to `apply_path` of a healthy
//! instance and print the reply — the command-line counterpart of a model client's
//! `predict`.

use std::time::Duration;

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::decl::{self, DeploymentDecl};
use crate::error::bad_input;
use crate::project::Project;
use crate::state;

/// Where `apply` POSTs when the declaration says nothing.
pub(crate) const DEFAULT_APPLY_PATH: &str = "/predict";
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The deployment to send the request to (one of its healthy instances)
    pub name: String,
    /// JSON text, or @FILE to read it from a file
    pub data: String,
}

pub(crate) async fn run(project: &Project, args: Args) -> anyhow::Result<()> {
    decl::validate_name("name", &args.name)?;
    let body = match args.data.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| bad_input(format!("DATA: cannot read {file}: {e}")))?,
        None => args.data.clone(),
    };
    serde_json::from_str::<serde_json::Value>(&body)
        .map_err(|e| bad_input(format!("DATA: not valid JSON: {e}")))?;

    let st = state::open(project)?.load().await?;
    let declared = match st.deployments.get(&args.name) {
        Some(d) => Some(d.declaration.clone()),
        None => decl::load::<DeploymentDecl>(&project.deployment_file(&args.name))?,
    };
    let path = declared
        .as_ref()
        .and_then(|d| d.apply_path.clone())
        .unwrap_or_else(|| DEFAULT_APPLY_PATH.to_string());
    let env = match st.deployments.get(&args.name) {
        Some(d) => d.env.clone(),
        None => declared
            .and_then(|d| d.env)
            .unwrap_or_else(|| project.default_env()),
    };
    let url = super::status::healthy_url(project, &env, &args.name).await?;
    let target = format!("{}{path}", url.trim_end_matches('/'));
    let (status, reply) = post_json(&target, body).await?;
    println!("{}", String::from_utf8_lossy(&reply).trim_end());
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(anyhow!("POST {target} answered HTTP {status}"))
    }
}

/// POSTs JSON over HTTP/1.1 and returns the status and body.
async fn post_json(url: &str, body: String) -> anyhow::Result<(u16, Vec<u8>)> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("no host in {url}"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let work = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        // Origin form ("/predict"), as servers expect from a client that is not a proxy.
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the reply of {url}"))?
            .to_bytes();
        Ok::<_, anyhow::Error>((status, bytes.to_vec()))
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| anyhow!("POST {url} got no answer within {}s", TIMEOUT.as_secs()))?
}
