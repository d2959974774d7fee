//! One HTTP(S) GET for a download: HTTP/1.1 over hyper, TLS with rustls (ring) and the
//! node's CA certificates, redirects followed (10 at most), a byte range asked for when a
//! partial file is resumed.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

/// How long connecting (TCP and TLS) and the answer's head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 10;

/// Why a request failed: worth trying again (the network, the server's 5xx) or not.
#[derive(Debug)]
pub(super) enum Failure {
    Again(String),
    Final(String),
}

/// An answer whose body is being read; the connection is closed when it is dropped.
pub(super) struct Answer {
    pub status: u16,
    pub body: Incoming,
    /// Content-Length.
    pub length: Option<u64>,
    /// Content-Range of a 206: where it starts and the whole size.
    pub range: Option<(u64, Option<u64>)>,
    /// ETag, else Last-Modified: what a resumed request names (If-Range).
    pub validator: Option<String>,
    /// Where a redirect points.
    location: Option<String>,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// The TLS client settings: the node's CA certificates (the system's store, or
/// `SSL_CERT_FILE` / `SSL_CERT_DIR`). Blocking: reads them.
pub(super) fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no CA certificates found on the node for https:// downloads (install ca-certificates, or set SSL_CERT_FILE){}",
            found
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    config_with(roots)
}

/// TLS 1.2 and 1.3 with ring, trusting `roots`, speaking HTTP/1.1.
fn config_with(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// GETs `url` (from byte `from` on, naming `validator` so a changed file comes whole),
/// following redirects. `tls` is asked for only by https:// URLs.
pub(super) async fn get<F, Fut>(
    url: &url::Url,
    from: u64,
    validator: Option<&str>,
    tls: F,
) -> Result<Answer, Failure>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<rustls::ClientConfig>, String>>,
{
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let tls = match url.scheme() {
            "https" => Some(tls().await.map_err(Failure::Final)?),
            "http" => None,
            other => {
                return Err(Failure::Final(format!(
                    "redirected to a {other}:// URL; only http:// and https:// are followed"
                )))
            }
        };
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, once(&url, from, validator, tls))
            .await
            .map_err(|_| {
                Failure::Again(format!(
                    "{} did not answer in {} s",
                    host_port(&url),
                    CONNECT_TIMEOUT.as_secs()
                ))
            })??;
        if !matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
            return Ok(answer);
        }
        let next = answer
            .location
            .as_deref()
            .and_then(|l| url.join(l).ok())
            .ok_or_else(|| {
                Failure::Final(format!(
                    "HTTP {} redirect without a usable Location",
                    answer.status
                ))
            })?;
        url = next;
    }
    Err(Failure::Final(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

fn host_port(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// One request, no redirects followed.
async fn once(
    url: &url::Url,
    from: u64,
    validator: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Answer, Failure> {
    let host = url
        .host_str()
        .ok_or_else(|| Failure::Final("the URL has no host".into()))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let again = |what: &str, e: &dyn std::fmt::Display| {
        Failure::Again(format!("{what} {}: {e}", host_port(url)))
    };
    // `[::1]` in a URL is `::1` to connect to.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| again("cannot connect to", &e))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(bare.clone())
                .map_err(|e| Failure::Final(format!("{host} is not a TLS server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| Failure::Final(format!("TLS with {}: {e}", host_port(url))))?;
            Box::new(stream)
        }
        None => Box::new(tcp),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| again("HTTP with", &e))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let mut req = hyper::Request::get(target)
        .header(header::HOST, authority)
        .header(
            header::USER_AGENT,
            concat!("deploy-agent/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::ACCEPT_ENCODING, "identity");
    if from > 0 {
        req = req.header(header::RANGE, format!("bytes={from}-"));
        if let Some(v) = validator {
            req = req.header(header::IF_RANGE, v);
        }
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Final(format!("cannot make the request: {e}")))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| again("no answer from", &e))?;
    let status = res.status().as_u16();
    let text = |name: header::HeaderName| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let length = text(header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok());
    let range = text(header::CONTENT_RANGE).and_then(|v| content_range(&v));
    // A weak ETag is not one If-Range may name.
    let validator = text(header::ETAG)
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| text(header::LAST_MODIFIED));
    let location = text(header::LOCATION);
    if status >= 500 {
        return Err(Failure::Again(format!(
            "HTTP {status} from {}",
            host_port(url)
        )));
    }
    Ok(Answer {
        status,
        body: res.into_body(),
        length,
        range,
        validator,
        location,
        conn,
    })
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`).
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

#[cfg(test)]
mod tests;
