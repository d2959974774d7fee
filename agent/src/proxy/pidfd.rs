//! Learning at once that the node proxy exited, whether it is the agent's child or was
//! adopted from an earlier agent run: a pidfd (Linux 5.3+) becomes readable when its
//! process exits, and tokio waits for that like for any socket.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::procstat::ProcId;

/// A pidfd for this very process; `NotFound` when it has already gone (or its pid names
/// another process now).
pub(super) fn open(id: ProcId) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, id.pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => io::Error::new(io::ErrorKind::NotFound, "it has exited"),
            _ => e,
        });
    }
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // Opened after the check would name a process that took the pid: checked again.
    if !id.is_running() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "it has exited"));
    }
    Ok(fd)
}

/// Resolves when the process of `fd` exits.
pub(super) async fn exited(fd: OwnedFd) -> io::Result<()> {
    // SAFETY: the pidfd is owned by the AsyncFd and neither replaced nor closed while it is.
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
    let _ready = fd.readable().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_exit_of_a_process_is_known_at_once() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let id = ProcId::of(child.id()).unwrap();
        let fd = open(id).unwrap();
        let began = std::time::Instant::now();
        tokio::time::timeout(std::time::Duration::from_secs(10), exited(fd))
            .await
            .unwrap()
            .unwrap();
        assert!(began.elapsed() < std::time::Duration::from_secs(5));
        child.wait().unwrap();
        assert_eq!(
            open(id).map(drop).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "reaped: gone"
        );
    }
}
