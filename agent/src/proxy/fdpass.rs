//! Listening sockets handed between the agent and the node proxy, as systemd's socket
//! activation hands them to a service: to a new proxy by inheritance (`deploy-agent proxy
//! --listen-fd N`), and over the control socket as `SCM_RIGHTS` ancillary data (a request
//! or an answer line carries the socket it is about). The agent keeps a duplicate of every
//! listening socket, so a proxy that dies or is replaced leaves its ports listening:
//! connections wait in the backlog for the next proxy instead of being refused.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::UnixStream;

/// The most sockets one message may carry (the protocol sends one at most).
const MAX_FDS: usize = 4;
/// The longest line accepted on the control socket.
const MAX_LINE: usize = 1 << 20;

/// Sends all of `data` on `stream`, with `fds` attached to its first bytes.
pub(crate) async fn send(stream: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let (mut sent, mut fds) = (0, fds);
    while sent < data.len() {
        let n = stream
            .async_io(Interest::WRITABLE, || {
                sendmsg(stream.as_raw_fd(), &data[sent..], fds)
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
        fds = &[];
    }
    Ok(())
}

/// Lines read from a stream, with the sockets that came with them.
#[derive(Default)]
pub(crate) struct Lines {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Lines {
    /// The next line (without its newline) and every socket received since the last one;
    /// `None` at the end of the stream.
    pub(crate) async fn next(
        &mut self,
        stream: &UnixStream,
    ) -> io::Result<Option<(String, Vec<OwnedFd>)>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line[..i]).into_owned();
                return Ok(Some((text, std::mem::take(&mut self.fds))));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a line longer than 1 MiB",
                ));
            }
            let mut chunk = [0u8; 8192];
            let fds = &mut self.fds;
            let n = stream
                .async_io(Interest::READABLE, || {
                    recvmsg(stream.as_raw_fd(), &mut chunk, fds)
                })
                .await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Room for the control message carrying `n` descriptors, in 8-byte words (`cmsghdr` is
/// aligned to `size_t`).
fn control_buffer(n: usize) -> (Vec<u64>, usize) {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) } as usize;
    (vec![0u64; space.div_ceil(8)], space)
}

fn sendmsg(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let (mut control, space) = control_buffer(fds.len());
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: the buffer has room for one header and `fds` (CMSG_SPACE), is aligned,
        // and msg points at it; CMSG_FIRSTHDR is not null for a buffer that large.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    // SAFETY: msg and the buffers it points to live across the call.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn recvmsg(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let (mut control, space) = control_buffer(MAX_FDS);
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg and the buffers it points to live across the call. Received
    // descriptors are close-on-exec at once (no app inherits them).
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the control buffer; the CMSG_* macros walk it within
    // msg_controllen, and every SCM_RIGHTS descriptor is a new one this process owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        tracing::warn!("more sockets came on the control socket than one message may carry; the rest were closed");
    }
    Ok(n as usize)
}

/// Takes over the inherited descriptor `fd` as a listening TCP socket (`--listen-fd`).
/// Called before anything else in the process opens a file, so `fd` cannot be one of its
/// own: a descriptor that is not open, or not a listening socket, is refused.
pub fn inherited_listener(fd: RawFd) -> Result<std::net::TcpListener, String> {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("descriptor {fd} is not open"));
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the option is written into an int of the size given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 || listening == 0 {
        return Err(format!("descriptor {fd} is not a listening socket"));
    }
    // SAFETY: the descriptor is open, was inherited for this purpose, and nothing else in
    // this process owns it. It is close-on-exec from now on.
    let listener = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        std::net::TcpListener::from_raw_fd(fd)
    };
    listener
        .local_addr()
        .map_err(|e| format!("descriptor {fd} is not a TCP socket: {e}"))?;
    Ok(listener)
}

/// Clears close-on-exec on `fds` (in a child between fork and exec: async-signal-safe), so
/// the program it runs inherits them.
pub(crate) fn inherit(fds: &[RawFd]) -> io::Result<()> {
    for fd in fds {
        // SAFETY: fcntl is async-signal-safe and only changes this process's descriptor.
        if unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_carries_a_listening_socket_across() {
        let (a, b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        send(&a, b"{\"op\":\"x\"}\nsecond\n", &[listener.as_raw_fd()])
            .await
            .unwrap();
        drop(listener);
        let mut lines = Lines::default();
        let (line, fds) = lines.next(&b).await.unwrap().unwrap();
        assert_eq!(line, "{\"op\":\"x\"}");
        assert_eq!(fds.len(), 1);
        let got = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(
            got.local_addr().unwrap(),
            addr,
            "the same socket, still open"
        );
        std::net::TcpStream::connect(addr).expect("it still listens");
        let (line, fds) = lines.next(&b).await.unwrap().unwrap();
        assert_eq!((line.as_str(), fds.len()), ("second", 0));
        drop(a);
        assert!(lines.next(&b).await.unwrap().is_none());
    }

    #[test]
    fn only_a_listening_socket_is_taken_over() {
        assert!(inherited_listener(-1).is_err());
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let err = inherited_listener(file.as_raw_fd()).unwrap_err();
        assert!(err.contains("not a listening socket"), "{err}");
    }
}
