//! One allocator of loopback addresses for every end-to-end test.
//!
//! All of 127.0.0.0/8 is loopback on Linux, so each test can have addresses of its own and
//! still run its apps on port 8000. An address is taken by an exclusive `flock` on a file
//! named after it, held until the [`Loopback`] is dropped: that excludes other tests of the
//! same binary, other test binaries and other checkouts running their tests at the same time,
//! and a test that crashed releases its addresses with its process.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};

/// The addresses handed out: 127.77.0.1 to 127.77.254.254 (the second octet keeps them
/// apart from addresses people use by hand, such as 127.0.0.1 and 127.0.1.1).
const SECOND_OCTET: u32 = 77;
const HOSTS: u32 = 254 * 254;

/// A loopback address held by this test until dropped. Derefs to the address text, e.g.
/// `127.77.3.14`.
pub struct Loopback {
    ip: String,
    _lock: Flock<File>,
}

impl Deref for Loopback {
    type Target = str;
    fn deref(&self) -> &str {
        &self.ip
    }
}

impl fmt::Display for Loopback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ip)
    }
}

impl fmt::Debug for Loopback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ip)
    }
}

/// A loopback address no other running test holds.
pub fn loopback() -> Loopback {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = lock_dir();
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    // Each test process starts at its own offset, so parallel binaries rarely try the same
    // addresses first.
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..HOSTS {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % HOSTS;
        let ip = format!("127.{SECOND_OCTET}.{}.{}", n / 254, n % 254 + 1);
        let path = dir.join(&ip);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            return Loopback { ip, _lock: lock };
        }
    }
    panic!("every test loopback address in 127.{SECOND_OCTET}.0.0/16 is taken");
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("deployctl-e2e-loopback")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_while_held_and_reused_after() {
        let a = loopback();
        let b = loopback();
        assert_ne!(*a, *b);
        assert!(a.starts_with("127.77."), "{a}");
        let ip: std::net::Ipv4Addr = a.parse().expect("an IPv4 address");
        assert!(ip.is_loopback());
    }
}
