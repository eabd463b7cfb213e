//! The two clocks the gateway reads, and nothing else: CLOCK_MONOTONIC for
//! every timer (the engine's clock, the one `bpf_ktime_get_ns` reads, as
//! Linux TCP's own timers do), and the wall clock for cookie slots only
//! (instances sharing a secret must agree on them). Never decides what a
//! time means; the engine does.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC in ns: `bpf_ktime_get_ns`'s clock. Never steps; stops
/// while the machine is suspended, as the kernel's TCP timers do.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The engine's clock: CLOCK_MONOTONIC in ms (since boot). Every deadline
/// (retransmissions, idle expiry, TIME_WAIT) and every `now_ms` handed to
/// the engine is on it, so an NTP step or `date -s` moves none of them.
pub fn engine_clock_ms() -> u64 {
    monotonic_ns() / 1_000_000
}

/// Wall-clock ms since the Unix epoch: cookie slots (through
/// `Engine::set_wall_clock`) and the flow file's record of when it was
/// written, nothing else.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
