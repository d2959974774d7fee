//! Raw client sockets for the node proxy's tests: a connection from a source address of the
//! test's own (so the proxy sees a known peer), whether the other side has closed one, and
//! the test process's own open-file limit.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A TCP connection to `to` from `from` (a loopback address of the test's own, port 0).
pub fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from: IpAddr = from
        .parse()
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, format!("{from}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let stream = runtime.block_on(async {
        let socket = match to {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(from, 0))?;
        tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connecting"))?
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether the other side has closed `stream` (end of file or reset), looked at without
/// waiting. Bytes it sent meanwhile are read and dropped.
pub fn closed_by_peer(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 4096];
    let closed = loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    let _ = stream.set_nonblocking(false);
    closed
}

/// The soft and hard limits on open files of process `pid` (from `/proc/PID/limits`).
pub fn open_files_limit(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut n = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| {
            if v == "unlimited" {
                Some(u64::MAX)
            } else {
                v.parse().ok()
            }
        });
    Some((n.next()??, n.next()??))
}

/// Sets this process's soft limit on open files (children started from now on inherit it);
/// the one it had.
pub fn set_open_files_soft_limit(soft: u64) -> u64 {
    let mut lim = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to an rlimit.
    unsafe {
        nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut lim);
        let was = lim.rlim_cur;
        lim.rlim_cur = soft.min(lim.rlim_max);
        nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim);
        was
    }
}
