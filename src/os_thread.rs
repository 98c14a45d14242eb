//! Spawning pollwatch's own OS threads under names that tools show.
//!
//! Linux keeps at most 15 bytes of a thread's name (`/proc/<pid>/task/<tid>/comm`, `top -H`,
//! gdb); std leaves a longer name unset there. We keep the full name for Rust and set a
//! truncated one for the OS, so `pollwatch-watchdog` shows as `pollwatch-watch`.

use crate::Error;

/// Spawns `f` on a new thread called `name`.
pub(crate) fn spawn_named<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, Error> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            set_os_name(name);
            f()
        })
        .map_err(|source| Error::Thread { name, source })
}

#[cfg(target_os = "linux")]
fn set_os_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from `buf`,
    // which is 16 bytes long and NUL-terminated; it names only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(not(target_os = "linux"))]
fn set_os_name(_name: &str) {}
