//! A real HAProxy in front of agents' instances of one deployment, health-checking each
//! through its agent's `GET /deployments/NAME/health` (`option httpchk`, every 200 ms, two
//! checks to go down or up). Runs in the foreground on a loopback address of its own
//! (frontend :8080, stats :8081); killed and reaped when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{http_get, require_tool, wait_until, Loopback};

/// One server of the backend: its name, the app's address (host:port) and its agent's
/// HTTP address (where the health endpoint is).
pub struct Server {
    pub name: String,
    pub app: String,
    pub agent_http: SocketAddr,
}

pub struct HaProxy {
    child: Child,
    ip: Loopback,
    dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy over `servers` for `deployment` and waits until it sees them all UP.
    /// `retries` is HAProxy's: with 0, a connection an instance refuses is the client's
    /// failure (nothing hides a lost request).
    pub fn start(deployment: &str, servers: &[Server], retries: u32) -> HaProxy {
        let bin = require_tool(
            "haproxy",
            "Debian's haproxy package (scripts/test.sh installs it)",
        );
        let ip = crate::loopback();
        let dir = tempfile::tempdir().expect("a directory for HAProxy");
        let redispatch = if retries > 0 {
            "  option redispatch\n"
        } else {
            ""
        };
        let mut cfg = format!(
            "global\n  maxconn 256\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n  retries {retries}\n{redispatch}\
             frontend front\n  bind {ip}:8080\n  default_backend app\n\
             backend app\n  balance roundrobin\n  option httpchk\n  http-check send meth GET uri /deployments/{deployment}/health\n  http-check expect status 200\n  default-server inter 200ms fall 2 rise 2\n"
        );
        for s in servers {
            cfg.push_str(&format!(
                "  server {} {} check addr {} port {}\n",
                s.name,
                s.app,
                s.agent_http.ip(),
                s.agent_http.port()
            ));
        }
        cfg.push_str(&format!(
            "listen stats\n  bind {ip}:8081\n  stats enable\n  stats uri /stats\n"
        ));
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("writing haproxy.cfg");
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("running haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("a log file");
        let child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("the log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting haproxy");
        let lb = HaProxy { child, ip, dir };
        assert!(
            wait_until(Duration::from_secs(15), || servers
                .iter()
                .all(|s| lb.status_of(&s.name) == "UP")),
            "HAProxy did not see every instance UP: {:?}\n--- haproxy log ---\n{}",
            lb.server_status(),
            lb.log()
        );
        lb
    }

    /// The frontend's URL.
    pub fn front(&self) -> String {
        format!("http://{}:8080/", self.ip)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// The status (UP, DOWN, ...) of each server of backend `app`, from the CSV stats.
    pub fn server_status(&self) -> Vec<(String, String)> {
        let Some((200, body)) = http_get(&format!("http://{}:8081/stats;csv", self.ip)) else {
            return vec![];
        };
        let csv = dechunk(&body);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return vec![];
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.get(px) == Some(&"app") && !matches!(f.get(sv), Some(&"FRONTEND" | &"BACKEND"))
            })
            .map(|f| (f[sv].to_string(), f.get(st).unwrap_or(&"").to_string()))
            .collect()
    }

    pub fn status_of(&self, server: &str) -> String {
        self.server_status()
            .into_iter()
            .find(|(s, _)| s == server)
            .map(|(_, st)| st)
            .unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy answers the stats page chunked even to HTTP/1.0: join the chunks.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string(); // not chunked
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
