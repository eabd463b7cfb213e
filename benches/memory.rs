//! Heap bytes per tracked flow and per half-open (SYN_RECV) entry, measured
//! with a counting allocator: the net allocation growth while 100,000 of
//! each are created, divided by 100,000. Run: `cargo bench --bench memory`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use synguard::engine::SyncookieMode;

use support::{engine, establish, send_syn, NOW};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for alloc/dealloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const N: u32 = 100_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    // Established flows (cookie path, so no queue entries are involved).
    let mut e = engine(SyncookieMode::Always, 2 * N as usize, 2 * N as usize);
    let before = live();
    for n in 0..N {
        establish(&mut e, n, NOW);
    }
    let per_flow = (live() - before) as f64 / f64::from(N);
    assert_eq!(e.flow_count(), N as usize);
    drop(e);

    // Half-open entries (queue path; SYNs only).
    let mut q = engine(SyncookieMode::Auto, 2 * N as usize, 2 * N as usize);
    let before = live();
    for n in 0..N {
        send_syn(&mut q, n, NOW);
    }
    let per_entry = (live() - before) as f64 / f64::from(N);
    assert_eq!(q.half_open_count(), N as usize);

    println!("heap bytes per established flow (incl. table, timer and per-state bookkeeping): {per_flow:.0}");
    println!(
        "heap bytes per half-open entry (incl. queue, per-source count and timer): {per_entry:.0}"
    );
}
