//! Redeploys in a row of apps whose threads outlive their main thread (Gradio, from PyPI,
//! and one of our own): each new release waits for the old one to let go of the port, and
//! is never mistaken for a foreign process.

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// On SIGTERM the main thread exits (`pthread_exit`: the process's leader becomes a zombie)
/// while a non-daemon thread keeps the listening socket open for 200 ms more, then closes it
/// and ends the process. Like Gradio and other multi-threaded servers, whose main thread is
/// gone a few ms before the threads that hold the socket.
const LINGERING_PY: &str = r#"import ctypes, os, signal, socket, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("MARK", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

server = HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()

def linger():
    time.sleep(0.2)
    server.socket.close()
    os._exit(0)

def term(*_):
    threading.Thread(target=linger).start()
    ctypes.CDLL(None).pthread_exit(None)

signal.signal(signal.SIGTERM, term)
print("lingering app listening", flush=True)
while True:
    time.sleep(1)
"#;

/// Redeploys (new commits, same port) `n` times; every one must succeed.
fn redeploy_loop(
    project: &Project,
    repo: &GitRepo,
    name: &str,
    file: &str,
    n: usize,
    extra: &[&str],
) {
    let url = repo.url();
    for i in 0..n {
        repo.write("app.py", &file.replace("__MARK__", &format!("r{i}")))
            .commit(&format!("redeploy {i}"));
        let out =
            project.deployctl_timeout(&fast_run_args(ENV, name, &url, extra), INSTALL_TIMEOUT);
        let all = out.all();
        assert!(
            !all.contains("foreign")
                && !all.contains("does not manage")
                && !all.contains("cannot see"),
            "redeploy {i}: our own exiting release was taken for a foreign process:\n{all}"
        );
        out.ok();
    }
}

#[test]
fn a_release_whose_threads_outlive_its_main_thread_is_waited_for() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let app = LINGERING_PY.replace("os.environ.get(\"MARK\", \"\")", "\"__MARK__\"");
    redeploy_loop(&project, &repo, "linger", &app, 5, &[]);
    let served = http_get(&agent.app_url(8000, "/")).expect("the last release answers");
    assert!(served.1.contains("r4"), "{served:?}");
}

/// Gradio, from PyPI: its main thread exits on SIGTERM a few ms before the threads that
/// hold its socket.
const GRADIO_PY: &str = r#"import os
import gradio as gr

def greet(name):
    return "__MARK__ " + name

demo = gr.Interface(fn=greet, inputs="text", outputs="text")
demo.launch(server_name=os.environ["HOST"], server_port=int(os.environ["PORT"]))
"#;

#[test]
fn gradio_warm_redeploys_all_succeed() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let extra = [
        "--pip",
        "gradio",
        "--env-var",
        "GRADIO_ANALYTICS_ENABLED=False",
    ];
    // The first deploy builds the environment; then five warm redeploys in a row.
    redeploy_loop(&project, &repo, "gradio", GRADIO_PY, 6, &extra);
    let page = http_get(&agent.app_url(8000, "/")).expect("gradio answers");
    assert_eq!(page.0, 200, "{page:?}");
}
