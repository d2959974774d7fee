//! The node proxy of a test's agent: its pid (from its pid file), its log, and its control
//! socket spoken to directly, as a late or foreign client would.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::Value;

use crate::Agent;

impl Agent {
    /// The node proxy's pid, from its pid file.
    pub fn proxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("proxy/proxy.pid"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
    }

    /// What the node proxy logged so far (every proxy of this data directory).
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("proxy/proxy.log")).unwrap_or_default()
    }

    /// Sends one request line on the proxy's control socket: its JSON answer.
    pub fn proxy_control(&self, request: &str) -> Option<Value> {
        let mut s = UnixStream::connect(self.data_dir.join("proxy/control.sock")).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("{request}\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }
}

/// Sends `signal` to `pid`; false when there is no such process.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).is_ok()
}
