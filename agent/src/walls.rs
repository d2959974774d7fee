//! The walls around an app's processes when the agent may build them (it runs as root):
//! set up in the forked child, before the app's first instruction, in this order:
//!
//! 1. its cgroups (membership and limits: files opened by the agent before the fork);
//! 2. a mount namespace of its own (mounts propagate in from the node, never out), where
//!    `/tmp` is the deployment's private directory, `/proc` shows only its own user's
//!    processes (`hidepid=invisible`: other owners' pids, command lines, working
//!    directories and open files are not there to look at), and the device files of GPUs
//!    it was not given are `/dev/null`;
//! 3. its own user and group, no supplementary groups;
//! 4. `no_new_privs` (no setuid binary gives it back root) and umask 077.
//!
//! It also gets nothing of the agent's environment: a clean one with a system PATH
//! ([`base_env`]). Everything the child does is async-signal safe: plain system calls on
//! strings made before the fork, no allocation, no lock.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use nix::libc;

/// PATH for an app behind the walls (after its venv's `bin`): the system's directories,
/// none of the agent's own (root's tool directories are not the app's business).
pub(crate) const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The walls of one process (and what it starts).
#[derive(Debug, Clone)]
pub(crate) struct Walls {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    /// `HOME`: the deployment's own directory (`DATA_DIR`).
    pub home: PathBuf,
    /// Bind-mounted at `/tmp` (and `TMPDIR=/tmp`); `None`: no private mount namespace.
    pub tmp: Option<PathBuf>,
    /// The agent's data directory when it lives in the node's `/tmp` (a test, a demo): it
    /// stays visible at its path inside the private `/tmp` (see [`keep_in_tmp`]).
    pub keep_in_tmp: Option<PathBuf>,
    /// Device files masked with `/dev/null` (GPUs given to other instances).
    pub hidden_devices: Vec<PathBuf>,
}

/// The environment an app behind walls starts from (its own variables are added after).
pub(crate) fn base_env(w: &Walls, path_prefix: Option<&Path>) -> Vec<(String, String)> {
    let path = match path_prefix {
        Some(p) => format!("{}:{SYSTEM_PATH}", p.display()),
        None => SYSTEM_PATH.to_string(),
    };
    let mut env = vec![
        ("PATH".to_string(), path),
        ("HOME".to_string(), w.home.to_string_lossy().into_owned()),
        ("USER".to_string(), w.user.clone()),
        ("LOGNAME".to_string(), w.user.clone()),
        ("SHELL".to_string(), "/bin/sh".to_string()),
    ];
    if w.tmp.is_some() {
        env.push(("TMPDIR".to_string(), "/tmp".to_string()));
    }
    // The node's locale and time zone are not secrets, and apps print dates and text.
    for (key, fallback) in [("LANG", Some("C.UTF-8")), ("LC_ALL", None), ("TZ", None)] {
        match std::env::var(key) {
            Ok(v) if !v.is_empty() => env.push((key.to_string(), v)),
            _ => {
                if let Some(f) = fallback {
                    env.push((key.to_string(), f.to_string()));
                }
            }
        }
    }
    env
}

/// Where the agent's data directory `data` (when it is in the node's `/tmp`) appears inside
/// the private directory `tmp` that becomes the app's `/tmp`, so the app still reaches its
/// release, venv and `DATA_DIR` at the same paths. The agent makes that directory (owned by
/// root) before the app starts; `None` when `data` is not in `/tmp`.
pub(crate) fn keep_in_tmp(tmp: &Path, data: &Path) -> Option<PathBuf> {
    let rel = data.strip_prefix("/tmp").ok()?;
    (!rel.as_os_str().is_empty()).then(|| tmp.join(rel))
}

/// The strings the child needs, made before the fork.
pub(crate) struct Prepared {
    uid: libc::uid_t,
    gid: libc::gid_t,
    tmp: Option<CString>,
    /// The data directory and where it shows up inside the private `/tmp` before that is
    /// mounted over `/tmp`.
    keep: Option<(CString, CString)>,
    devices: Vec<CString>,
    root: CString,
    slash_tmp: CString,
    proc_: CString,
    proc_fs: CString,
    proc_opts: [CString; 2],
    dev_null: CString,
}

fn cstring(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has a NUL byte", p.display()),
        )
    })
}

impl Walls {
    pub(crate) fn prepare(&self) -> io::Result<Prepared> {
        let lit = |s: &str| CString::new(s).map_err(io::Error::other);
        Ok(Prepared {
            uid: self.uid,
            gid: self.gid,
            tmp: self.tmp.as_deref().map(cstring).transpose()?,
            keep: match (&self.tmp, &self.keep_in_tmp) {
                (Some(tmp), Some(data)) => match keep_in_tmp(tmp, data) {
                    Some(at) => Some((cstring(data)?, cstring(&at)?)),
                    None => None,
                },
                _ => None,
            },
            devices: self
                .hidden_devices
                .iter()
                .map(|d| cstring(d))
                .collect::<io::Result<_>>()?,
            root: lit("/")?,
            slash_tmp: lit("/tmp")?,
            proc_: lit("/proc")?,
            proc_fs: lit("proc")?,
            proc_opts: [lit("hidepid=invisible")?, lit("hidepid=2")?],
            dev_null: lit("/dev/null")?,
        })
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Prepared {
    /// Raises the walls around the calling (forked) process. Async-signal safe.
    pub(crate) fn enter(&self) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: plain system calls with NUL-terminated strings made before the fork and
        // null pointers where the kernel takes them; nothing is allocated.
        unsafe {
            if self.tmp.is_some() || !self.devices.is_empty() {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Mounts made here stay here; the node's new mounts still show up.
                check(libc::mount(
                    null,
                    self.root.as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ))?;
                if let Some(tmp) = &self.tmp {
                    if let Some((data, at)) = &self.keep {
                        check(libc::mount(
                            data.as_ptr(),
                            at.as_ptr(),
                            null,
                            libc::MS_BIND,
                            std::ptr::null(),
                        ))?;
                    }
                    // Recursive: the data directory bound inside it comes along.
                    check(libc::mount(
                        tmp.as_ptr(),
                        self.slash_tmp.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                }
                // Kernels before 5.8 have no per-mount `invisible`: `2` hides as well.
                // Neither: the app sees other pids, but the kernel still refuses it their
                // environment, memory, files and working directory (another user's).
                let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                for opts in &self.proc_opts {
                    let ret = libc::mount(
                        self.proc_fs.as_ptr(),
                        self.proc_.as_ptr(),
                        self.proc_fs.as_ptr(),
                        proc_flags,
                        opts.as_ptr().cast(),
                    );
                    if ret == 0 {
                        break;
                    }
                }
                for dev in &self.devices {
                    check(libc::mount(
                        self.dev_null.as_ptr(),
                        dev.as_ptr(),
                        null,
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(self.gid))?;
            check(libc::setuid(self.uid))?;
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            libc::umask(0o077);
        }
        Ok(())
    }
}
