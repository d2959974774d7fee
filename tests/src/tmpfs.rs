//! A small tmpfs mounted on a test's directory (an agent's data directory on a small
//! disk), unmounted when dropped — also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; dropping it unmounts it (lazily: nothing the test left open keeps it)
/// and removes the agent's temporary directory it was mounted in.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`: "64m") on `dir` (root only).
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        crate::require_root("the test mounts a small tmpfs as the agent's data directory");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0711"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs -o size={size} on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Free and total bytes.
    pub fn space(&self) -> (u64, u64) {
        let s = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs of the tmpfs");
        let unit = s.fragment_size() as u64;
        (s.blocks_available() as u64 * unit, s.blocks() as u64 * unit)
    }

    /// Fills it with the file `name` until `leave` bytes at most are free (0: until a
    /// write fails); the bytes written.
    pub fn fill_leaving(&self, name: &str, leave: u64) -> u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join(name)).expect("creating a filler file");
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        while self.space().0 > leave {
            match f.write(&chunk) {
                Ok(n) if n > 0 => written += n as u64,
                _ => break,
            }
        }
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            eprintln!("cannot unmount the tmpfs on {}", self.dir.display());
            return;
        }
        // The agent's temporary directory could not remove its mount point.
        match self.dir.parent() {
            Some(p)
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("deployctl-e2e-agent-")) =>
            {
                let _ = std::fs::remove_dir_all(p);
            }
            _ => {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}
