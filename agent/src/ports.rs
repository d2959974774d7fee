//! Who listens on a port: read from `/proc/net/tcp{,6}` and `/proc/*/fd`, so a port held by
//! a foreign process can be reported with that process, and a health check that cannot
//! connect can say "the app listens on 127.0.0.1 instead of HOST".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

impl Listener {
    /// Whether a connection to `host` on this port would reach this socket.
    pub(crate) fn covers(&self, host: IpAddr) -> bool {
        // v4-mapped addresses are already turned into v4 by the parser.
        self.addr == host || self.addr.is_unspecified()
    }
}

/// Whether a new socket could listen on `host:port`: no socket listens on that port at an
/// address that overlaps it (the same address, a wildcard, or any when `host` is one).
pub(crate) fn bindable(host: IpAddr, port: u16) -> bool {
    !listeners(port)
        .iter()
        .any(|l| l.covers(host) || host.is_unspecified())
}

/// A port on `ip` that nothing listens on now (the kernel's pick), for an instance behind
/// the node proxy.
pub(crate) fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    let socket = std::net::TcpListener::bind((ip, 0))?;
    Ok(socket.local_addr()?.port())
}

/// Every socket listening on `port`.
pub(crate) fn listeners(port: u16) -> Vec<Listener> {
    all_listeners()
        .into_iter()
        .filter(|l| l.port == port)
        .collect()
}

/// Every listening TCP socket of the node (v4 and v6).
fn all_listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse_proc_net_tcp(&text, v6));
        }
    }
    out
}

/// Parses the kernel's table; keeps sockets in state LISTEN (0A).
fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                return None;
            }
            let (addr_hex, port_hex) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let addr = if v6 {
                parse_v6(addr_hex)?
            } else {
                IpAddr::V4(Ipv4Addr::from(
                    u32::from_str_radix(addr_hex, 16).ok()?.swap_bytes(),
                ))
            };
            let inode = f[9].parse().ok()?;
            Some(Listener { addr, port, inode })
        })
        .collect()
}

/// `/proc/net/tcp6` prints the address as four host-order 32-bit words.
fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for word in 0..4 {
        let w = u32::from_str_radix(&hex[word * 8..word * 8 + 8], 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&w.swap_bytes().to_be_bytes());
    }
    let v6 = Ipv6Addr::from(bytes);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) if !v6.is_unspecified() => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    })
}

/// The process owning a socket inode, found by scanning `/proc/*/fd` (best effort: another
/// user's processes are not readable unless the agent is root).
pub(crate) fn pid_of_socket(inode: u64) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .find(|pid| socket_inodes(*pid).contains(&inode))
}

/// The socket inodes a process holds. Once its main thread has exited, `/proc/PID/fd` is
/// empty although the other threads still hold every file: then they are read from the
/// first thread that shows any.
pub(crate) fn socket_inodes(pid: u32) -> std::collections::HashSet<u64> {
    let of_dir = |dir: std::path::PathBuf| -> std::collections::HashSet<u64> {
        std::fs::read_dir(dir)
            .map(|fds| {
                fds.flatten()
                    .filter_map(|fd| socket_inode(&fd.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let own = of_dir(std::path::PathBuf::from(format!("/proc/{pid}/fd")));
    if !own.is_empty() || crate::procstat::read(pid).is_none_or(|s| s.is_live()) {
        return own;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return own;
    };
    tasks
        .flatten()
        .map(|t| of_dir(t.path().join("fd")))
        .find(|set| !set.is_empty())
        .unwrap_or_default()
}

/// Every TCP address the processes `pids` listen on (their sockets in state LISTEN).
pub(crate) fn listening_of(pids: &[u32]) -> Vec<(IpAddr, u16)> {
    let inodes: std::collections::HashSet<u64> =
        pids.iter().flat_map(|pid| socket_inodes(*pid)).collect();
    let mut out: Vec<(IpAddr, u16)> = all_listeners()
        .into_iter()
        .filter(|l| inodes.contains(&l.inode))
        .map(|l| (l.addr, l.port))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The process group of `pid`.
pub(crate) fn pgid_of(pid: u32) -> Option<u32> {
    crate::procstat::read(pid).map(|s| s.pgrp)
}

/// "pid 1234 (python3 -m http.server 8000)" (on a blocking thread: reads /proc).
pub(crate) async fn describe_process(pid: u32) -> String {
    tokio::task::spawn_blocking(move || describe_process_blocking(pid))
        .await
        .unwrap_or_else(|_| format!("pid {pid}"))
}

/// "pid 1234 (python3 -m http.server 8000)", via sysinfo.
fn describe_process_blocking(pid: u32) -> String {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let Ok(mut sys) = System::new() else {
        return format!("pid {pid}");
    };
    let spid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[spid]),
        true,
        ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
    );
    match sys.process(spid) {
        Some(p) => {
            let cmd: Vec<String> = p
                .cmd()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let cmd = if cmd.is_empty() {
                p.name().to_string_lossy().into_owned()
            } else {
                cmd.join(" ")
            };
            format!("pid {pid} ({})", cmd.chars().take(120).collect::<String>())
        }
        None => format!("pid {pid}"),
    }
}

/// The first listener on `port` that `host` would reach and that is neither held by the
/// process groups led by `ours` nor by a process `is_ours` says is ours, with its owning
/// pid when visible (on a blocking thread: reads /proc, maybe every process's fds).
pub(crate) async fn foreign_holder(
    host: IpAddr,
    port: u16,
    ours: Vec<u32>,
    is_ours: impl Fn(u32) -> bool + Send + 'static,
) -> Option<(Listener, Option<u32>)> {
    tokio::task::spawn_blocking(move || {
        foreign_holders(host, port, &ours)
            .into_iter()
            .find(|(_, pid)| !pid.is_some_and(&is_ours))
    })
    .await
    .ok()
    .flatten()
}

/// The pids holding listeners on `port` that `host` would reach and that `select` picks,
/// sorted (on a blocking thread: reads /proc).
pub(crate) async fn holder_pids(
    host: IpAddr,
    port: u16,
    select: impl Fn(u32) -> bool + Send + 'static,
) -> Vec<u32> {
    tokio::task::spawn_blocking(move || {
        let mut pids: Vec<u32> = holders(host, port)
            .into_iter()
            .filter_map(|(_, pid)| pid)
            .filter(|pid| select(*pid))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    })
    .await
    .unwrap_or_default()
}

/// Listeners on `port` that `host` would reach and that no process of the process groups
/// led by `ours` holds, with their owning pids (when visible). The groups' own processes
/// (found from their leaders down, through `/proc/PID/task/TID/children`) are looked at
/// first, so a redeploy, whose port its running release holds, reads the app's few
/// processes rather than every file descriptor of every process on the node.
fn foreign_holders(host: IpAddr, port: u16, ours: &[u32]) -> Vec<(Listener, Option<u32>)> {
    let reachable: Vec<Listener> = listeners(port)
        .into_iter()
        .filter(|l| l.covers(host))
        .collect();
    if reachable.is_empty() {
        return Vec::new();
    }
    let own = sockets_of_groups(ours);
    reachable
        .into_iter()
        .filter(|l| !own.contains(&l.inode))
        .map(|l| {
            let pid = pid_of_socket(l.inode);
            (l, pid)
        })
        // A member of our groups that the walk from the leaders missed (reparented).
        .filter(|(_, pid)| !pid.and_then(pgid_of).is_some_and(|g| ours.contains(&g)))
        .collect()
}

/// Socket inodes held by the processes of the groups led by `leaders`: the leaders and
/// their descendants that are still in one of those groups.
fn sockets_of_groups(leaders: &[u32]) -> std::collections::HashSet<u64> {
    let mut inodes = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<u32> = leaders.to_vec();
    while let Some(pid) = todo.pop() {
        if seen.len() > 10_000 || !seen.insert(pid) {
            continue;
        }
        if !pgid_of(pid).is_some_and(|g| leaders.contains(&g)) {
            continue;
        }
        inodes.extend(socket_inodes(pid));
        todo.extend(crate::procstat::children(pid));
    }
    inodes
}

/// The inode of the socket a `/proc/PID/fd/N` link points to.
fn socket_inode(fd: &std::path::Path) -> Option<u64> {
    let link = std::fs::read_link(fd).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Listeners on `port` that `host` would reach, with their owning pids (when visible).
fn holders(host: IpAddr, port: u16) -> Vec<(Listener, Option<u32>)> {
    listeners(port)
        .into_iter()
        .filter(|l| l.covers(host))
        .map(|l| {
            let pid = pid_of_socket(l.inode);
            (l, pid)
        })
        .collect()
}

/// `ports` ("1024-65535"): a range of ports a deployment may ask for, none below 1024.
pub(crate) fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let (a, b) = text
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a range FIRST-LAST, e.g. \"1024-65535\""))?;
    let first: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a port"))?;
    let last: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a port"))?;
    if first < 1024 || first > last {
        return Err(format!(
            "{text:?}: the range must be non-empty and start at 1024 or above (ports below are the node's own services')"
        ));
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_listen_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F41 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n";
        let l = parse_proc_net_tcp(text, false);
        assert_eq!(
            l,
            vec![Listener {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 8000,
                inode: 12345
            }]
        );
    }

    #[test]
    fn parses_v6_any() {
        let text = "header\n   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n";
        let l = parse_proc_net_tcp(text, true);
        assert_eq!(l[0].addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert!(l[0].covers("127.0.0.5".parse().unwrap()));
    }

    #[test]
    fn finds_a_real_listener_and_its_pid() {
        // An address of this test's own: other tests bind 127.0.0.1 and may be given the
        // port this one frees.
        let own = IpAddr::V4(Ipv4Addr::new(127, 91, 7, 3));
        let sock = std::net::TcpListener::bind((own, 0)).unwrap();
        let port = sock.local_addr().unwrap().port();
        let found = holders(own, port);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, Some(std::process::id()));
        assert!(holders("127.0.0.9".parse().unwrap(), port).is_empty());
        // This test's own process group holds it: not foreign.
        let me = nix::unistd::getpgrp().as_raw() as u32;
        assert!(foreign_holders(own, port, &[me]).is_empty());
        let foreign = foreign_holders(own, port, &[]);
        assert_eq!(foreign.len(), 1, "{foreign:?}");
        assert!(bindable("127.0.0.9".parse().unwrap(), port));
        assert!(!bindable(own, port));
        drop(sock);
        assert!(holders(own, port).is_empty());
        assert_eq!(
            pgid_of(std::process::id()),
            Some(nix::unistd::getpgrp().as_raw() as u32)
        );
    }
}
