//! Who owns a TCP socket, asked of the kernel (netlink `sock_diag`, the interface `ss`
//! uses): a deployment's private port is served only while its listener belongs to the
//! deployment's own user. Another owner's app that binds that port (while the app is
//! down, say) gets no request from the node proxy and no healthy check from the agent.
//!
//! One request, one answer, no `/proc/net/tcp` scan: a few microseconds.

use std::io;
use std::net::{IpAddr, SocketAddr};

use nix::libc;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const HEADER: usize = 16;
/// `inet_diag_req_v2`.
const REQUEST: usize = 56;
/// Offset of `idiag_uid` in `inet_diag_msg`.
const UID_AT: usize = 64;
/// Offset of `idiag_sport`, then `idiag_src` in `inet_diag_msg`.
const SPORT_AT: usize = 4;
const SRC_AT: usize = 8;

/// The uid of the socket that accepted our connection `local` → `remote` (its listener's
/// owner); `None` when the kernel knows no such socket.
pub(crate) fn peer_uid(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u32>> {
    // The socket on the far side: its own address is `remote`, its peer is `local`.
    let req = request(remote, Some(local), u32::MAX, false)?;
    let mut found = None;
    exchange(&req, |msg| {
        if msg.len() > UID_AT + 4 {
            found = Some(u32_at(msg, UID_AT));
        }
    })?;
    Ok(found)
}

/// The uids of the TCP listeners on `port` at `host` (or at a wildcard address).
pub(crate) fn listener_uids(host: IpAddr, port: u16) -> io::Result<Vec<u32>> {
    let probe = SocketAddr::new(host, port);
    let req = request(probe, None, 1 << TCP_LISTEN, true)?;
    let mut uids = Vec::new();
    let v4 = host.is_ipv4();
    exchange(&req, |msg| {
        if msg.len() < UID_AT + 4 {
            return;
        }
        let sport = u16::from_be_bytes([msg[SPORT_AT], msg[SPORT_AT + 1]]);
        if sport != port {
            return;
        }
        let addr: IpAddr = if v4 {
            IpAddr::from([
                msg[SRC_AT],
                msg[SRC_AT + 1],
                msg[SRC_AT + 2],
                msg[SRC_AT + 3],
            ])
        } else {
            let mut b = [0u8; 16];
            b.copy_from_slice(&msg[SRC_AT..SRC_AT + 16]);
            IpAddr::from(b)
        };
        if addr == host || addr.is_unspecified() {
            uids.push(u32_at(msg, UID_AT));
        }
    })?;
    Ok(uids)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A netlink message asking for TCP sockets whose own address is `src` (and peer `dst`).
fn request(
    src: SocketAddr,
    dst: Option<SocketAddr>,
    states: u32,
    dump: bool,
) -> io::Result<Vec<u8>> {
    let family = match src.ip() {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    let mut b = Vec::with_capacity(HEADER + REQUEST);
    b.extend_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = libc::NLM_F_REQUEST as u16 | if dump { libc::NLM_F_DUMP as u16 } else { 0 };
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes()); // seq
    b.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    b.push(family as u8);
    b.push(libc::IPPROTO_TCP as u8);
    b.push(0); // no extensions
    b.push(0);
    b.extend_from_slice(&states.to_ne_bytes());
    // inet_diag_sockid
    b.extend_from_slice(&src.port().to_be_bytes());
    b.extend_from_slice(&dst.map(|d| d.port()).unwrap_or(0).to_be_bytes());
    b.extend_from_slice(&addr16(src.ip()));
    b.extend_from_slice(&dst.map(|d| addr16(d.ip())).unwrap_or([0; 16]));
    b.extend_from_slice(&0u32.to_ne_bytes()); // interface
    b.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    debug_assert_eq!(b.len(), HEADER + REQUEST);
    Ok(b)
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
    out
}

/// Sends `req` and gives each answer's payload to `each`, until the kernel is done.
fn exchange(req: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    // SAFETY: a socket we own, closed by OwnedFd; buffers are ours and sized as passed.
    let fd = unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    };
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: `req` is a valid buffer of its length.
    let sent = unsafe { libc::send(raw, req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut at = 0usize;
        let n = n as usize;
        if n == 0 {
            return Ok(());
        }
        while at + HEADER <= n {
            let len = u32_at(&buf, at) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < HEADER || at + len > n {
                return Ok(());
            }
            let payload = &buf[at + HEADER..at + len];
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = if payload.len() >= 4 {
                        u32_at(payload, 0) as i32
                    } else {
                        0
                    };
                    // ENOENT: no such socket (an exact lookup that found none).
                    return match -code {
                        0 => Ok(()),
                        libc::ENOENT => Ok(()),
                        e => Err(io::Error::from_raw_os_error(e)),
                    };
                }
                _ => each(payload),
            }
            at += (len + 3) & !3;
        }
        if req_is_exact(req) {
            return Ok(());
        }
    }
}

/// An exact lookup gets one answer (no NLMSG_DONE follows it).
fn req_is_exact(req: &[u8]) -> bool {
    let flags = u16::from_ne_bytes([req[6], req[7]]);
    flags & libc::NLM_F_DUMP as u16 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_our_own_listener_and_connection() {
        let me = nix::unistd::getuid().as_raw();
        let listener = std::net::TcpListener::bind("127.0.0.77:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(listener_uids(addr.ip(), addr.port()).unwrap(), vec![me]);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let local = client.local_addr().unwrap();
        assert_eq!(peer_uid(local, addr).unwrap(), Some(me));
        // Nothing listens on a port just closed.
        let gone = std::net::TcpListener::bind("127.0.0.77:0").unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        assert!(listener_uids(gone_addr.ip(), gone_addr.port())
            .unwrap()
            .is_empty());
    }
}
