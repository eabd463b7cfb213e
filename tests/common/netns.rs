//! Network namespaces seen from Rust: listing them, and running a closure on a thread
//! that has entered one (`in_netns`, `spawn_in_netns`), so the sockets it opens live
//! there. It never creates or deletes a namespace (lab.rs does), and `in_netns` /
//! `spawn_in_netns` never move the calling thread: `setns` happens on a thread they
//! spawn (only `enter_netns` moves its caller, on request).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread::{self, JoinHandle};

use super::commands::run;
pub(super) fn ns_exists(ns: &str) -> bool {
    PathBuf::from("/run/netns").join(ns).exists()
}

/// Names of all network namespaces (`ip netns list`).
pub fn netns_list() -> Vec<String> {
    run("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Enters the network namespace `ns` on the *current thread* only.
pub fn enter_netns(ns: &str) -> io::Result<()> {
    let f = File::open(PathBuf::from("/run/netns").join(ns))?;
    // SAFETY: valid fd for the duration of the call; CLONE_NEWNET only affects this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result (sockets it
/// creates live in `ns`). `f` may borrow from the caller. Panics in `f` propagate.
pub fn in_netns<T: Send, F: FnOnce() -> T + Send>(ns: &str, f: F) -> T {
    thread::scope(|s| {
        let h = s.spawn(|| {
            enter_netns(ns).unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// Like [`in_netns`] but returns at once with the thread's handle (`f` must be `'static`).
pub fn spawn_in_netns<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
    ns: &str,
    f: F,
) -> JoinHandle<T> {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter_netns(&ns).unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
        f()
    })
}
