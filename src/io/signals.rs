//! SIGINT/SIGTERM -> a shutdown flag, SIGHUP -> a reload flag; the I/O loop
//! polls both. Nothing else runs in the handler (only an atomic store is
//! async-signal-safe here); the reload itself runs on the loop's thread.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGHUP {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        SHUTDOWN.store(true, Ordering::SeqCst);
    }
}

/// Install the handlers. The loop's poll() returns EINTR on delivery, so
/// shutdown and reload are prompt. Until this runs, SIGHUP keeps its default
/// action (terminate), which is why the gateway reports readiness to systemd
/// only after it.
pub fn install() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to a
        // static atomic, which is async-signal-safe. No SA_RESTART, so
        // blocking calls return EINTR.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn shutdown_requested() -> bool {
    SHUTDOWN.load(Ordering::SeqCst)
}

/// True once per SIGHUP burst: several SIGHUPs before the loop looks are
/// one reload (each reload re-reads the whole file anyway).
pub fn take_reload_request() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}
