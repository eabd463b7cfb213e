//! The XDP fast path's loader and map plumbing (design.md section
//! 8): loads bpf/synguard_xdp.o (committed, built by bpf/build.sh) with
//! aya, attaches it to the client port in the configured mode, and once per
//! I/O batch writes what the engine publishes (parameters, tracked-tuple
//! changes) and reads what the program reports (tuples it tracked itself,
//! per-CPU counters folded into the engine's counters).
//!
//! Never decides anything about a frame (the program acts on what the engine
//! published; the engine decides everything else), and never runs when
//! `io.xdp = "off"`: the AF_PACKET path then works exactly as before.

mod attach;
pub mod bpffs;
mod events;
pub mod features;
mod flows;
pub mod maps;
pub mod pins;

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use aya::maps::{Array, DevMap, HashMap, Map, MapData, PerCpuArray, Queue, RingBuf};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};

use super::clock::monotonic_ns;
use crate::engine::fast_path::{FastPathParams, FastPathService, TrackedChange};
use crate::engine::forward::ForwardEntry;
use crate::engine::program_events::{ProgramEvent, ProgramEventResult, Replay};
use crate::engine::{Counters, DropReason, Engine, FlowKey, Port};
use attach::Attachment;
use events::EventReader;
use flows::pinned_flows_map_fits;
pub use flows::ForwardProgressReader;
use maps::{
    counter, SgFlow, SgFlowKey, SgHandshake, SgParams, SgService, SgServiceKey, SgTracked,
    ORIGIN_ENGINE, PORT_CLIENT, PORT_SERVER,
};
use pins::PinDir;

/// The compiled program (bpf/build.sh; CI checks it is not stale).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/synguard_xdp.o");

/// The client port's program (SYNs, cookie ACKs, client->server flow
/// segments) and the server port's (server->client flow segments).
const PROGRAM: &str = "sg_fast_path";
const SERVER_PROGRAM: &str = "sg_server_port";

/// The parameter entry is stale (the program passes everything up) when
/// the engine has not rewritten it for this long: the loop publishes every
/// batch and at least every 200 ms when idle.
pub const STALE_AFTER_NS: u64 = 2_000_000_000;

/// Largest MTU native XDP takes without multi-buffer support: one 4 KiB page
/// less headroom and skb_shared_info (drivers/net/veth.c veth_xdp_set:
/// max_mtu = PAGE_SIZE - VETH_XDP_HEADROOM - ETH_HLEN - shared info).
pub const MAX_NATIVE_MTU: usize = 3498;

/// Tuples the program may track on its own beyond the engine's flows and
/// half-open entries (valid cookie ACKs not yet confirmed).
const PENDING_SLACK: u32 = 65_536;

/// Most program-made tuples taken from the queue per read, and how often
/// it is read (well within `XDP_TRACKED_GRACE_MS`).
const QUEUE_DRAIN_MAX: usize = 4096;
const QUEUE_DRAIN_INTERVAL_MS: u64 = 20;

/// `[io] xdp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpSetting {
    /// Native, else generic (logged), else off (warned).
    #[default]
    Auto,
    Native,
    Generic,
    Off,
}

impl XdpSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpSetting::Auto => "auto",
            XdpSetting::Native => "native",
            XdpSetting::Generic => "generic",
            XdpSetting::Off => "off",
        }
    }
}

/// The mode the program actually runs in (metrics `synguard_xdp_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpActive {
    Off = 0,
    Generic = 1,
    Native = 2,
}

impl XdpActive {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpActive::Off => "off",
            XdpActive::Generic => "generic",
            XdpActive::Native => "native",
        }
    }
}

/// Why the fast path could not start; each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP program was refused: synguard needs CAP_BPF and CAP_NET_ADMIN for io.xdp (or set io.xdp = \"off\"): {0}")]
    Permission(String),
    #[error("loading the XDP program failed: {0}")]
    Load(String),
    #[error("interface `{iface}` has MTU {mtu}, too large for native XDP (at most {MAX_NATIVE_MTU}); lower the MTU or use io.xdp = \"generic\"")]
    MtuTooLarge { iface: String, mtu: usize },
    /// The interface already runs an XDP program that synguard does not own:
    /// the kernel refuses a link over a program attached by netlink (EBUSY)
    /// and native and generic programs side by side (EEXIST), in
    /// `dev_xdp_attach` (net/core/dev.c).
    #[error("interface `{iface}` already has an XDP program attached, so {mode} XDP cannot be: detach it (`ip link set dev {iface} xdp off`, or `synguard detach` for synguard's own pins) or set io.xdp = \"off\": {detail}")]
    Occupied {
        iface: String,
        mode: &'static str,
        detail: String,
    },
    #[error("the driver of `{iface}` refused {mode} XDP: {detail}")]
    Unsupported {
        iface: String,
        mode: &'static str,
        detail: String,
    },
    #[error("XDP map `{0}` missing or of the wrong type in bpf/synguard_xdp.o")]
    Map(&'static str),
    #[error("XDP map update failed: {0}")]
    MapUpdate(String),
    #[error("XDP pins in bpffs: {0}")]
    Pin(String),
}

fn is_permission(e: &(dyn std::error::Error + 'static)) -> bool {
    has_errno(e, libc::EPERM) || e.to_string().contains("Operation not permitted")
}

/// Whether `errno` is somewhere in the error's chain.
fn has_errno(e: &(dyn std::error::Error + 'static), errno: i32) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(errno) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The loaded program and its maps (attached or not: tests run it with
/// BPF_PROG_TEST_RUN without attaching).
pub struct XdpFastPath {
    ebpf: Ebpf,
    params: Array<MapData, SgParams>,
    services: HashMap<MapData, SgServiceKey, SgService>,
    tracked: HashMap<MapData, SgFlowKey, SgTracked>,
    new_tracked: Queue<MapData, SgFlowKey>,
    /// `sg_engine_filter` and its copy here (this side is its only writer):
    /// engine-published tuples per slot.
    engine_filter: Array<MapData, u32>,
    engine_filter_counts: Vec<u32>,
    counters: PerCpuArray<MapData, u64>,
    /// Counter totals already folded into the engine's counters.
    folded: [u64; counter::COUNT as usize],
    /// Established flows the program forwards, the id of that map (for
    /// [`ForwardProgressReader`]), and the keys written there.
    flows: HashMap<MapData, SgFlowKey, SgFlow>,
    flows_map_id: u32,
    tracked_map_id: u32,
    forwarded: HashSet<SgFlowKey>,
    /// Tuples whose `sg_tracked` entry is the engine's (counted in the
    /// engine filter): known here, so no map read per change.
    engine_tracked: HashSet<SgFlowKey>,
    tx_ports: DevMap<MapData>,
    /// The frames the program handled in the engine's place, and the
    /// backend handshakes it started (this side only deletes them).
    events: EventReader,
    handshakes: HashMap<MapData, SgFlowKey, SgHandshake>,
    /// Per port a program is attached to.
    attached: Vec<Attachment>,
    /// Where the links and `sg_flows` are pinned (`io.xdp_pin_dir`), and
    /// whether `sg_flows` was adopted from an earlier process's pin.
    pins: Option<PinDir>,
    adopted: bool,
    /// Ports the programs redirect to (see `enable_redirects`).
    redirect_targets: [bool; 2],
    /// When `sync` next reads `sg_new_tracked` (engine clock, ms).
    next_queue_drain_ms: u64,
    active: XdpActive,
    changes: Vec<TrackedChange>,
    /// Reused for the replays of one drain of the event ring.
    replays: Vec<(ProgramEvent, Replay)>,
    /// What was last written to the parameter map (time fields zeroed) and
    /// when (monotonic ns), and the services last written.
    published: Option<(SgParams, u64)>,
    published_services: Vec<FastPathService>,
    /// Reused for the per-batch parameter snapshot (no allocation per batch).
    scratch: FastPathParams,
    pub map_errors: u64,
}

/// How often unchanged parameters are written again: well within
/// `STALE_AFTER_NS`, so the program never takes a live engine for a stopped
/// one, and its clock extrapolation stays short.
const REFRESH_PARAMS_NS: u64 = 250_000_000;

/// `SG_FILTER_SLOTS` in bpf/synguard_xdp.h.
const ENGINE_FILTER_SLOTS: usize = 65536;

/// The parameter entry for `p` stamped `mono_ns`: the program hands cookie
/// ACKs on as backend SYNs, since this side reads its event ring.
fn program_params(p: &FastPathParams, mono_ns: u64) -> SgParams {
    SgParams {
        handshakes: 1,
        ..SgParams::from_params(p, mono_ns, STALE_AFTER_NS)
    }
}

/// A parameter entry without its time stamps, to tell a change from a
/// refresh.
fn timeless(p: &SgParams) -> SgParams {
    SgParams {
        clock_ms: 0,
        mono_ns: 0,
        ..*p
    }
}

impl XdpFastPath {
    /// Load (verify) the programs and take their maps; `max_tracked` sizes
    /// the tracked-tuple and flow maps (flows + half-open entries + slack).
    /// Nothing is pinned.
    pub fn load(max_tracked: usize) -> Result<XdpFastPath, XdpError> {
        Self::load_with(max_tracked, None)
    }

    /// As [`Self::load`], with `sg_flows` pinned in `pins` (adopted when an
    /// earlier process left one of the same layout there, its entries then
    /// in [`Self::take_adopted_flows`]), and the attachments pinned there
    /// by [`Self::attach`].
    pub fn load_pinned(max_tracked: usize, pins: PinDir) -> Result<XdpFastPath, XdpError> {
        Self::load_with(max_tracked, Some(pins))
    }

    fn load_with(max_tracked: usize, pins: Option<PinDir>) -> Result<XdpFastPath, XdpError> {
        let entries = u32::try_from(max_tracked)
            .unwrap_or(u32::MAX - PENDING_SLACK)
            .saturating_add(PENDING_SLACK);
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries("sg_tracked", entries)
            .map_max_entries("sg_flows", entries)
            .map_max_entries("sg_handshakes", entries);
        let mut adopted = false;
        if let Some(p) = &pins {
            p.create().map_err(|e| XdpError::Pin(e.to_string()))?;
            let path = p.flows_map();
            if path.exists() {
                adopted = pinned_flows_map_fits(&path);
                if !adopted {
                    tracing::warn!(pin = %path.display(), "the pinned flow map has another layout (an older synguard?): its flows are not adopted");
                    std::fs::remove_file(&path)
                        .map_err(|e| XdpError::Pin(format!("{}: {e}", path.display())))?;
                }
            }
            loader.map_pin_path("sg_flows", path);
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| {
            if is_permission(&e) {
                XdpError::Permission(e.to_string())
            } else {
                XdpError::Load(e.to_string())
            }
        })?;
        for name in [PROGRAM, SERVER_PROGRAM] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(XdpError::Load(format!("no program `{name}`")))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
            prog.load().map_err(|e| {
                if is_permission(&e) {
                    XdpError::Permission(e.to_string())
                } else {
                    XdpError::Load(format!("{name}: {e} (verifier: {e:?})"))
                }
            })?;
        }
        macro_rules! take {
            ($name:literal) => {
                ebpf.take_map($name)
                    .ok_or(XdpError::Map($name))?
                    .try_into()
                    .map_err(|_| XdpError::Map($name))?
            };
        }
        let params = take!("sg_params");
        let services = take!("sg_services");
        let tracked_map_id = match ebpf.map("sg_tracked") {
            Some(Map::HashMap(data)) => data
                .info()
                .map_err(|e| XdpError::Load(format!("sg_tracked: {e}")))?
                .id(),
            _ => return Err(XdpError::Map("sg_tracked")),
        };
        let tracked = take!("sg_tracked");
        let new_tracked = take!("sg_new_tracked");
        let engine_filter = take!("sg_engine_filter");
        let counters = take!("sg_counters");
        let tx_ports = take!("sg_tx_ports");
        let handshakes = take!("sg_handshakes");
        let events = EventReader::new(
            RingBuf::try_from(
                ebpf.take_map("sg_events")
                    .ok_or(XdpError::Map("sg_events"))?,
            )
            .map_err(|_| XdpError::Map("sg_events"))?,
        );
        let (flows, flows_map_id) = match ebpf.take_map("sg_flows") {
            Some(Map::HashMap(data)) => {
                let id = data
                    .info()
                    .map_err(|e| XdpError::Load(format!("sg_flows: {e}")))?
                    .id();
                let map =
                    HashMap::try_from(Map::HashMap(data)).map_err(|_| XdpError::Map("sg_flows"))?;
                (map, id)
            }
            _ => return Err(XdpError::Map("sg_flows")),
        };
        Ok(XdpFastPath {
            ebpf,
            params,
            services,
            tracked,
            new_tracked,
            engine_filter,
            engine_filter_counts: vec![0; ENGINE_FILTER_SLOTS],
            counters,
            folded: [0; counter::COUNT as usize],
            flows,
            flows_map_id,
            tracked_map_id,
            forwarded: HashSet::new(),
            engine_tracked: HashSet::new(),
            tx_ports,
            events,
            handshakes,
            attached: Vec::new(),
            pins,
            adopted,
            redirect_targets: [false; 2],
            next_queue_drain_ms: 0,
            active: XdpActive::Off,
            changes: Vec::new(),
            replays: Vec::new(),
            published: None,
            published_services: Vec::new(),
            scratch: FastPathParams::default(),
            map_errors: 0,
        })
    }

    /// The client port's program.
    pub fn program(&self) -> &Xdp {
        self.program_named(PROGRAM)
    }

    /// The server port's program.
    pub fn server_program(&self) -> &Xdp {
        self.program_named(SERVER_PROGRAM)
    }

    fn program_named(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in XdpFastPath::load")
    }

    pub fn active(&self) -> XdpActive {
        self.active
    }

    /// Write the engine's parameter snapshot (stamped with the monotonic
    /// clock now) and, the first time or when they change, the services.
    pub fn publish_params(&mut self, engine: &Engine, now_ms: u64) -> Result<(), XdpError> {
        self.publish_params_at(engine, now_ms, monotonic_ns())
    }

    /// As [`Self::publish_params`], with the monotonic stamp given (tests
    /// make a stale entry with an old one).
    pub fn publish_params_at(
        &mut self,
        engine: &Engine,
        now_ms: u64,
        mono_ns: u64,
    ) -> Result<(), XdpError> {
        let p = engine.fast_path_params(now_ms);
        self.write_params(&p, mono_ns)
    }

    /// Per batch: the parameters only when they changed or their stamp is
    /// `REFRESH_PARAMS_NS` old, so a batch costs no map syscalls of its own.
    fn publish_params_if_due(&mut self, engine: &Engine, now_ms: u64) -> Result<(), XdpError> {
        let mut p = std::mem::take(&mut self.scratch);
        engine.fill_fast_path_params(now_ms, &mut p);
        let result = self.publish_if_changed(&p);
        self.scratch = p;
        result
    }

    fn publish_if_changed(&mut self, p: &FastPathParams) -> Result<(), XdpError> {
        let mono_ns = monotonic_ns();
        let due = match self.published {
            Some((last, at)) => {
                last != timeless(&program_params(p, 0))
                    || mono_ns.saturating_sub(at) >= REFRESH_PARAMS_NS
                    || p.services != self.published_services
            }
            None => true,
        };
        if due {
            self.write_params(p, mono_ns)?;
        }
        Ok(())
    }

    fn write_params(&mut self, p: &FastPathParams, mono_ns: u64) -> Result<(), XdpError> {
        let entry = program_params(p, mono_ns);
        self.params
            .set(0, entry, 0)
            .map_err(|e| XdpError::MapUpdate(e.to_string()))?;
        self.published = Some((timeless(&entry), mono_ns));
        if p.services != self.published_services {
            // A reload may have removed services: the program must stop
            // answering for them.
            for old in &self.published_services {
                if !p
                    .services
                    .iter()
                    .any(|s| s.addr == old.addr && s.port == old.port)
                {
                    let (k, _) = SgServiceKey::from_service(old);
                    match self.services.remove(&k) {
                        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                        Err(e) => return Err(XdpError::MapUpdate(e.to_string())),
                    }
                }
            }
            for s in &p.services {
                let (k, v) = SgServiceKey::from_service(s);
                if self.services.get(&k, 0).ok() != Some(v) {
                    self.services
                        .insert(k, v, 0)
                        .map_err(|e| XdpError::MapUpdate(e.to_string()))?;
                }
            }
            self.published_services = p.services.clone();
        }
        Ok(())
    }

    /// Replay the frames the program handled in the engine's place since
    /// the last call (no syscall); returns how many. Called before every
    /// frame the engine handles, so it never sees a frame of a flow before
    /// the program's report that created it.
    pub fn drain_events(&mut self, engine: &mut Engine) -> usize {
        let mut replays = std::mem::take(&mut self.replays);
        let n = self.events.drain(engine, &mut replays);
        for (event, r) in replays.drain(..) {
            let Some(key) = r.key.map(|k| SgFlowKey::from_key(&k)) else {
                continue;
            };
            match (event, r.result) {
                // The flow the program installed is the engine's forwarded
                // flow now.
                (ProgramEvent::BackendEstablished { .. }, ProgramEventResult::Replayed) => {
                    self.forwarded.insert(key);
                }
                // A flow the engine does not forward must not stay in the
                // program's map.
                (ProgramEvent::BackendEstablished { .. }, _) if !self.forwarded.contains(&key) => {
                    let _ = self.flows.remove(&key);
                }
                // A handshake the engine keeps no flow for: nobody would
                // ever end the program's entry.
                (ProgramEvent::BackendSyn, ProgramEventResult::Refused) => {
                    let _ = self.handshakes.remove(&key);
                }
                _ => {}
            }
        }
        self.replays = replays;
        n
    }

    /// Once per batch, before its frames are sent: hand the tuples the
    /// program tracked to the engine, apply the engine's tracked-tuple
    /// changes, publish the parameters.
    pub fn sync(&mut self, engine: &mut Engine, now_ms: u64) {
        self.drain_events(engine);
        // The queue only gives the program's own tuples their deadline
        // (seconds away), so it is read every QUEUE_DRAIN_INTERVAL_MS, not
        // on each of the loop's several syncs: an empty read is a syscall.
        if now_ms >= self.next_queue_drain_ms {
            self.next_queue_drain_ms = now_ms + QUEUE_DRAIN_INTERVAL_MS;
            for _ in 0..QUEUE_DRAIN_MAX {
                match self.new_tracked.pop(0) {
                    Ok(k) => engine.note_fast_path_tracked(now_ms, k.to_key()),
                    Err(_) => break,
                }
            }
        }
        let mut changes = std::mem::take(&mut self.changes);
        engine.drain_tracked_changes(now_ms, &mut changes);
        let since_ns = monotonic_ns();
        for change in changes.drain(..) {
            let r = match change {
                TrackedChange::Publish(k, entry) => {
                    let key = SgFlowKey::from_key(&k);
                    self.publish_tracked(&key, since_ns)
                        .and_then(|()| self.publish_flow(key, entry.as_ref()))
                }
                TrackedChange::EndHandshake(k) => {
                    match self.handshakes.remove(&SgFlowKey::from_key(&k)) {
                        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                TrackedChange::Unpublish(k) => {
                    let key = SgFlowKey::from_key(&k);
                    self.publish_flow(key, None)
                        .and_then(|()| self.unpublish_tracked(&key))
                }
            };
            if let Err(e) = r {
                self.map_errors += 1;
                if self.map_errors.is_power_of_two() {
                    tracing::warn!(error = %e, total = self.map_errors, "XDP tracked-map update failed");
                }
            }
        }
        self.changes = changes;
        if let Err(e) = self.publish_params_if_due(engine, now_ms) {
            self.map_errors += 1;
            if self.map_errors.is_power_of_two() {
                tracing::warn!(error = %e, total = self.map_errors, "XDP parameter update failed");
            }
        }
    }

    /// The engine tracks `key`: its entry becomes (or stays) the engine's,
    /// and the engine filter counts it once.
    fn publish_tracked(
        &mut self,
        key: &SgFlowKey,
        since_ns: u64,
    ) -> Result<(), aya::maps::MapError> {
        if self.engine_tracked.contains(key) {
            return Ok(()); // already the engine's: nothing to write
        }
        self.tracked.insert(
            *key,
            SgTracked {
                since_ns,
                origin: ORIGIN_ENGINE,
                pad: [0; 7],
            },
            0,
        )?;
        self.engine_tracked.insert(*key);
        self.add_to_filter(key, 1)
    }

    /// The engine no longer tracks `key` (or never confirmed the program's
    /// entry): the entry goes, and the filter forgets it if it counted it.
    fn unpublish_tracked(&mut self, key: &SgFlowKey) -> Result<(), aya::maps::MapError> {
        let was_engines = self.engine_tracked.remove(key);
        match self.tracked.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e),
        }
        if was_engines {
            self.add_to_filter(key, -1)?;
        }
        Ok(())
    }

    fn add_to_filter(&mut self, key: &SgFlowKey, delta: i32) -> Result<(), aya::maps::MapError> {
        let slot = key.filter_slot();
        let n = &mut self.engine_filter_counts[slot as usize];
        *n = n.saturating_add_signed(delta);
        self.engine_filter.set(slot, *n, 0)
    }

    /// The program-made / engine-published entry for a tuple, if any.
    pub fn tracked_entry(&self, key: &crate::engine::FlowKey) -> Option<SgTracked> {
        self.tracked.get(&SgFlowKey::from_key(key), 0).ok()
    }

    /// Summed per-CPU counter totals.
    pub fn counter_totals(&self) -> [u64; counter::COUNT as usize] {
        let mut out = [0u64; counter::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(values) = self.counters.get(&(i as u32), 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }

    /// Fold what the program did since the last call into the engine's
    /// counters, so the existing metrics count XDP's work too; returns how
    /// many SYNs it answered in that time.
    pub fn fold_counters(&mut self, c: &Counters) -> u64 {
        let now = self.counter_totals();
        let d = |i: u32| now[i as usize].wrapping_sub(self.folded[i as usize]);
        let add = |a: &std::sync::atomic::AtomicU64, n: u64| {
            a.store(a.load(Ordering::Relaxed) + n, Ordering::Relaxed)
        };
        let tx = d(counter::SYNACK_COOKIE) + d(counter::RST_SENT);
        let dropped = d(counter::DROP_INVALID_COOKIE)
            + d(counter::DROP_RST_BUDGET)
            + d(counter::DROP_INVALID_FLAGS)
            + d(counter::DROP_NO_FLOW);
        // Frames that never reached AF_PACKET: answered or dropped in XDP.
        let (to_server, to_client) = (d(counter::FWD_TO_SERVER), d(counter::FWD_TO_CLIENT));
        let (br_server, br_client) = (d(counter::BRIDGED_TO_SERVER), d(counter::BRIDGED_TO_CLIENT));
        add(
            &c.frames_rx[Port::Client.index()],
            tx + dropped + to_server + br_server,
        );
        add(
            &c.frames_tx[Port::Client.index()],
            tx + to_client + br_client,
        );
        add(&c.frames_rx[Port::Server.index()], to_client + br_client);
        add(&c.frames_tx[Port::Server.index()], to_server + br_server);
        add(&c.translated, to_server + to_client);
        add(&c.xdp_forwarded[Port::Server.index()], to_server);
        add(&c.xdp_forwarded[Port::Client.index()], to_client);
        add(&c.bridged, br_server + br_client);
        add(&c.xdp_bridged[Port::Server.index()], br_server);
        add(&c.xdp_bridged[Port::Client.index()], br_client);
        add(&c.syn_received, d(counter::SYN_RECEIVED));
        add(&c.synack_cookie, d(counter::SYNACK_COOKIE));
        add(&c.cookies_failed, d(counter::COOKIES_FAILED));
        add(&c.rst_sent, d(counter::RST_SENT));
        for (idx, reason) in [
            (counter::DROP_INVALID_COOKIE, DropReason::InvalidCookie),
            (counter::DROP_RST_BUDGET, DropReason::RstBudget),
            (counter::DROP_INVALID_FLAGS, DropReason::InvalidFlags),
            (counter::DROP_NO_FLOW, DropReason::NoFlow),
        ] {
            add(&c.drops[reason.index()], d(idx));
        }
        c.xdp_mode.store(self.active as u64, Ordering::Relaxed);
        add(
            &c.xdp_events[ProgramEventResult::RingFull.index()],
            d(counter::EVENTS_FULL),
        );
        let syns = d(counter::SYNACK_COOKIE);
        self.folded = now;
        syns
    }
}

impl Drop for XdpFastPath {
    fn drop(&mut self) {
        // Pinned attachments are left (or removed) only by stop/detach.
        if self.pins.is_none() {
            self.detach();
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}
