//! A small HTTP server of files for the artifacts tests, on the test's own loopback
//! address: it logs every request (so "nothing was downloaded" is proved by its log),
//! answers a Range with 206, redirects `/redirect/X` to `/X`, and cuts the first transfer
//! of the files it is told to (a broken download, to be resumed).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Serves the files of a directory; logs `GET PATH RANGE` per request; `/redirect/X`
/// answers 302 to `/X`; the first transfer of each file named in argv[4] is cut halfway.
const SERVER_PY: &str = r#"import http.server, os, socket, sys, threading
root, log, ip = sys.argv[1], sys.argv[2], sys.argv[3]
cut = set(a for a in sys.argv[4].split(",") if a)
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        rng = self.headers.get("Range", "")
        with lock, open(log, "a") as f:
            f.write("GET %s %s\n" % (self.path, rng or "-"))
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/" + self.path[len("/redirect/"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = self.path.lstrip("/")
        p = os.path.join(root, name)
        if not os.path.isfile(p):
            self.send_error(404)
            return
        data = open(p, "rb").read()
        start = int(rng[6:-1]) if rng.startswith("bytes=") and rng.endswith("-") else 0
        if start:
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"%d"' % len(data))
        self.end_headers()
        with lock:
            first = name in cut
            cut.discard(name)
        if first:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((ip, 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// The test's model server: killed (by its pid) when dropped.
pub struct ModelServer {
    child: Child,
    /// `http://IP:PORT`.
    pub base: String,
    log: PathBuf,
}

impl ModelServer {
    /// Serves `dir/files` on `ip`, logging to `dir/requests.log`; the first transfer of
    /// each file named in `cut` (comma-separated) is cut halfway.
    pub fn start(ip: &str, dir: &Path, cut: &str) -> ModelServer {
        let script = dir.join("server.py");
        std::fs::write(&script, SERVER_PY).expect("writing the server");
        let log = dir.join("requests.log");
        std::fs::write(&log, "").expect("creating the request log");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.join("files"))
            .arg(&log)
            .arg(ip)
            .arg(cut)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the model server");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // python3 prints its port once it listens, or exits (then: nothing).
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the model server did not say its port: {line:?}")
        });
        ModelServer {
            child,
            base: format!("http://{ip}:{port}"),
            log,
        }
    }

    /// The requests so far, one `GET PATH RANGE` line each.
    pub fn requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Packs what directory `dir` holds into the .tar.gz `archive` (a model archive).
pub fn tar_gz(dir: &Path, archive: &Path) {
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .expect("tar");
    assert!(tar.success(), "tar made {}", archive.display());
}
