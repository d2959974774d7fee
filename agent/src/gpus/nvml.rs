//! NVML, the NVIDIA driver's management library, loaded at run time (`dlopen`): the agent
//! is one binary for every node, and most nodes have no NVIDIA driver. Linking
//! `libnvidia-ml` would stop the agent from starting there; loading it finds none instead.
//!
//! Only the calls discovery needs are bound. Every return code is checked and explained by
//! `nvmlErrorString`, so a note names the call that failed and why.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use nix::libc;

use super::{Discovery, Gpu};

/// The library's soname: the unversioned `libnvidia-ml.so` is only in development packages.
const LIBRARY: &CStr = c"libnvidia-ml.so.1";
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE` and `NVML_DEVICE_NAME_V2_BUFFER_SIZE`.
const TEXT_LEN: usize = 96;

/// `nvmlReturn_t`: 0 is `NVML_SUCCESS`.
type Return = c_int;
/// `nvmlDevice_t`: an opaque handle, valid until `nvmlShutdown`.
type Device = *mut c_void;

/// `nvmlMemory_t` (v1, as `nvmlDeviceGetMemoryInfo` fills it).
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: u64,
    // Never read, but part of the layout NVML writes.
    #[allow(dead_code)]
    free: u64,
    #[allow(dead_code)]
    used: u64,
}

/// The bound functions of a loaded `libnvidia-ml.so.1`.
struct Lib {
    handle: *mut c_void,
    error_string: unsafe extern "C" fn(Return) -> *const c_char,
    init: unsafe extern "C" fn() -> Return,
    shutdown: unsafe extern "C" fn() -> Return,
    count: unsafe extern "C" fn(*mut c_uint) -> Return,
    by_index: unsafe extern "C" fn(c_uint, *mut Device) -> Return,
    uuid: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Return,
    name: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Return,
    memory: unsafe extern "C" fn(Device, *mut Memory) -> Return,
    minor: unsafe extern "C" fn(Device, *mut c_uint) -> Return,
}

impl Drop for Lib {
    fn drop(&mut self) {
        // SAFETY: `handle` came from a successful dlopen and is closed once, here; no
        // function pointer of it outlives `self`.
        unsafe { libc::dlclose(self.handle) };
    }
}

/// The GPUs NVML sees; none, with the reason in the note, when there is no driver or it
/// does not answer. A GPU that fails a call is left out and named in the note.
pub(super) fn discover() -> Discovery {
    let lib = match Lib::open() {
        Ok(lib) => lib,
        Err(note) => return Discovery::none(note),
    };
    // SAFETY: no arguments; NVML counts inits, and the shutdown below matches this one.
    let code = unsafe { (lib.init)() };
    if let Err(e) = lib.check(code, "nvmlInit_v2") {
        return Discovery::none(format!("NVIDIA driver found but not usable: {e}"));
    }
    let found = lib.devices();
    // SAFETY: matches the successful init above; no device handle is used after it.
    let code = unsafe { (lib.shutdown)() };
    if let Err(e) = lib.check(code, "nvmlShutdown") {
        tracing::debug!(error = %e, "NVML shutdown");
    }
    found
}

impl Lib {
    /// Loads the library and binds every function, or says why not.
    fn open() -> Result<Lib, String> {
        // SAFETY: LIBRARY is NUL-terminated; dlopen has no other precondition. The
        // library's initialisers run here; NVML's only set up its own state.
        let handle = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            tracing::debug!(error = %dl_error(), "dlopen libnvidia-ml.so.1");
            return Err("no NVIDIA driver (libnvidia-ml.so.1 not found)".to_string());
        }
        // SAFETY: `handle` is open, and the field types of Lib are the declarations of
        // nvml.h for these names.
        let bound = unsafe { Lib::bind(handle) };
        if bound.is_err() {
            // SAFETY: nothing bound from the handle survives this failed attempt.
            unsafe { libc::dlclose(handle) };
        }
        bound
    }

    /// Binds every function of an opened library.
    ///
    /// # Safety
    /// `handle` must be an open handle of libnvidia-ml.so.1.
    unsafe fn bind(handle: *mut c_void) -> Result<Lib, String> {
        // SAFETY (each `symbol`): the types are the ones nvml.h declares for these names.
        unsafe {
            Ok(Lib {
                handle,
                error_string: symbol(handle, c"nvmlErrorString")?,
                init: symbol(handle, c"nvmlInit_v2")?,
                shutdown: symbol(handle, c"nvmlShutdown")?,
                count: symbol(handle, c"nvmlDeviceGetCount_v2")?,
                by_index: symbol(handle, c"nvmlDeviceGetHandleByIndex_v2")?,
                uuid: symbol(handle, c"nvmlDeviceGetUUID")?,
                name: symbol(handle, c"nvmlDeviceGetName")?,
                memory: symbol(handle, c"nvmlDeviceGetMemoryInfo")?,
                minor: symbol(handle, c"nvmlDeviceGetMinorNumber")?,
            })
        }
    }

    /// `Ok` for `NVML_SUCCESS`, else "<call>: <nvmlErrorString> (NVML error <code>)".
    fn check(&self, code: Return, call: &str) -> Result<(), String> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: nvmlErrorString accepts any code and returns a static string (or NULL).
        let text = unsafe { (self.error_string)(code) };
        let text = if text.is_null() {
            "unknown error".to_string()
        } else {
            // SAFETY: non-NULL, NUL-terminated and static per the NVML documentation.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        Err(format!("{call}: {text} (NVML error {code})"))
    }

    /// Every GPU NVML counts, between init and shutdown.
    fn devices(&self) -> Discovery {
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid, writable c_uint.
        let code = unsafe { (self.count)(&mut count) };
        if let Err(e) = self.check(code, "nvmlDeviceGetCount_v2") {
            return Discovery::none(format!("NVIDIA driver found but not usable: {e}"));
        }
        let mut gpus = Vec::new();
        let mut problems = Vec::new();
        for index in 0..count {
            match self.device(index) {
                Ok((gpu, None)) => gpus.push(gpu),
                Ok((gpu, Some(problem))) => {
                    problems.push(format!("GPU {index}: {problem}"));
                    gpus.push(gpu);
                }
                Err(e) => problems.push(format!("GPU {index} left out: {e}")),
            }
        }
        let mut note = format!(
            "{} NVIDIA GPU{} found by NVML",
            gpus.len(),
            plural(gpus.len())
        );
        if !problems.is_empty() {
            note = format!("{note} ({})", problems.join("; "));
        }
        Discovery { gpus, note }
    }

    /// One GPU. A missing minor number is not fatal (the GPU is still usable; only its
    /// device file cannot be hidden from other apps), so it comes back as a problem.
    fn device(&self, index: c_uint) -> Result<(Gpu, Option<String>), String> {
        let mut dev: Device = std::ptr::null_mut();
        // SAFETY: `dev` is a valid, writable handle slot.
        let code = unsafe { (self.by_index)(index, &mut dev) };
        self.check(code, "nvmlDeviceGetHandleByIndex_v2")?;
        let uuid = self.text(dev, self.uuid, "nvmlDeviceGetUUID")?;
        let name = self.text(dev, self.name, "nvmlDeviceGetName")?;
        let mut memory = Memory::default();
        // SAFETY: `dev` is a live handle (init not yet shut down); `memory` is writable
        // and has the layout of nvmlMemory_t.
        let code = unsafe { (self.memory)(dev, &mut memory) };
        self.check(code, "nvmlDeviceGetMemoryInfo")?;
        let mut minor: c_uint = 0;
        // SAFETY: `dev` is a live handle; `minor` is a valid, writable c_uint.
        let code = unsafe { (self.minor)(dev, &mut minor) };
        let (minor, problem) = match self.check(code, "nvmlDeviceGetMinorNumber") {
            Ok(()) => (Some(minor), None),
            Err(e) => (
                None,
                Some(format!("{e}, so its device file cannot be hidden")),
            ),
        };
        let gpu = Gpu {
            index,
            uuid,
            name,
            memory_bytes: memory.total,
            minor,
        };
        Ok((gpu, problem))
    }

    /// A string NVML writes into a caller's buffer (UUID, name).
    fn text(
        &self,
        dev: Device,
        f: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Return,
        call: &str,
    ) -> Result<String, String> {
        let mut buf = [0u8; TEXT_LEN];
        // SAFETY: `dev` is a live handle; NVML writes at most TEXT_LEN bytes, NUL included.
        let code = unsafe { f(dev, buf.as_mut_ptr().cast(), TEXT_LEN as c_uint) };
        self.check(code, call)?;
        CStr::from_bytes_until_nul(&buf)
            .map(|s| s.to_string_lossy().into_owned())
            .map_err(|_| format!("{call}: the answer is not NUL-terminated"))
    }
}

/// A function of the library as the type `T` (an `unsafe extern "C" fn`).
///
/// # Safety
/// `T` must be a function pointer type matching the C declaration of `name`.
unsafe fn symbol<T: Copy>(handle: *mut c_void, name: &CStr) -> Result<T, String> {
    // SAFETY: `handle` is open; `name` is NUL-terminated.
    let f = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if f.is_null() || std::mem::size_of::<T>() != std::mem::size_of::<*mut c_void>() {
        return Err(format!(
            "libnvidia-ml.so.1 has no {} (driver too old?)",
            name.to_string_lossy()
        ));
    }
    // SAFETY: a non-NULL symbol address of the same size as T; the caller vouches for the
    // signature.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&f) })
}

/// The last dlopen/dlsym error, for the debug log.
fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl call.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "unknown error".to_string();
    }
    // SAFETY: non-NULL and NUL-terminated, read before any other dl call.
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
