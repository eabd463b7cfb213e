//! Heap bytes per tracked flow and per half-open (SYN_RECV) entry, measured
//! with a counting allocator: the net allocation growth while 100,000 of
//! each are created, divided by 100,000. Also what a restart's flow
//! handover costs per flow (`state.flow_file`): file bytes, and the time to
//! export and write, and to read and import, the 100,000 flows. With XDP
//! (root): kernel bytes per flow handed to the XDP program (`sg_flows` and
//! `sg_tracked`, from the maps' memlock in /proc/self/fdinfo, which Linux
//! 6.4+ computes from the elements allocated), and what publishing a flow
//! costs (one `XdpFastPath::sync` for 50,000 flows). Run:
//! `cargo bench --bench memory`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

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
    let handover = flow_file_cost(&e);
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
    println!("{handover}");
    println!("{}", xdp_map_cost());
}

const NX: u32 = 50_000;

/// memlock of map `id`, from its fdinfo.
fn memlock(id: u32) -> Option<u64> {
    use std::os::fd::{AsFd, AsRawFd};
    let info = aya::maps::MapInfo::from_id(id).ok()?;
    let fd = info.fd().ok()?;
    let text =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

fn xdp_map_cost() -> String {
    use synguard::io::xdp::XdpFastPath;
    let mut x = match XdpFastPath::load(2 * NX as usize) {
        Ok(x) => x,
        Err(e) => return format!("XDP maps per flow: not measured (loading the program: {e})"),
    };
    let mut e = engine(SyncookieMode::Always, 2 * NX as usize, 2 * NX as usize);
    for n in 0..NX {
        establish(&mut e, n, NOW);
    }
    let ids = x.per_flow_map_ids();
    let before: Vec<u64> = ids
        .iter()
        .map(|(_, id)| memlock(*id).unwrap_or(0))
        .collect();
    e.set_forward_progress_source(Box::new(x.progress_reader().unwrap()));
    e.enable_fast_path();
    // Old enough to be handed over (FORWARD_AFTER_MS).
    let t = Instant::now();
    x.sync(&mut e, NOW + 1_000);
    let publish = t.elapsed();
    assert_eq!(e.forwarded_keys().len(), NX as usize);
    let per_map: Vec<String> = ids
        .iter()
        .zip(&before)
        .map(|((name, id), b)| {
            let grown = memlock(*id).unwrap_or(0).saturating_sub(*b);
            format!("{name} {:.0}", grown as f64 / f64::from(NX))
        })
        .collect();
    format!(
        "XDP maps per forwarded flow (kernel bytes): {}; publishing {NX} flows (tracked entry, engine filter slot, flow entry): {:.2} us per flow ({:.0} ms)",
        per_map.join(", "),
        publish.as_secs_f64() * 1e6 / f64::from(NX),
        publish.as_secs_f64() * 1e3
    )
}

/// Save `e`'s flows to a flow file and take them into a new engine, timed;
/// the file is removed.
fn flow_file_cost(e: &synguard::engine::Engine) -> String {
    let path =
        std::env::temp_dir().join(format!("synguard-bench-flows-{}.json", std::process::id()));
    let clocks = synguard::flow_file::Clocks {
        engine_ms: NOW,
        wall_ms: NOW,
        boot_id: Some("bench".into()),
    };
    let t0 = Instant::now();
    let n = synguard::flow_file::save(&path, "gwc", "gws", &clocks, e.export_flows()).unwrap();
    let save = t0.elapsed();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let mut fresh = engine(SyncookieMode::Always, 2 * N as usize, 2 * N as usize);
    let t1 = Instant::now();
    let loaded = synguard::flow_file::take(&path, "gwc", "gws", &clocks)
        .unwrap()
        .unwrap();
    let report = fresh.import_flows(loaded.flows);
    let load = t1.elapsed();
    assert_eq!(report.restored, n);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    format!(
        "flow file for {n} flows: {:.0} bytes per flow; save {:.2} us per flow ({:.0} ms), take and import {:.2} us per flow ({:.0} ms)",
        bytes as f64 / n as f64,
        per(save),
        save.as_secs_f64() * 1e3,
        per(load),
        load.as_secs_f64() * 1e3
    )
}
