//! Start-up wiring: cookie secret, engine, the two AF_PACKET ports (offloads
//! off first), the flows a previous run left (`state.flow_file`), the
//! metrics endpoint and signal handling, then the I/O loop until
//! SIGINT/SIGTERM, with SIGHUP handed to the reloader, and the flows left
//! for the next run. Tells systemd (Type=notify) when it is ready and when
//! it stops. Owns no packet logic.

use anyhow::Context;

use crate::control::ControlServer;
use crate::cookie::{CookieKeys, CookieSecret};
use crate::engine::Engine;
use crate::flow_file;
use crate::io::af_packet::PacketPort;
use crate::io::clock::{engine_clock_ms, wall_clock_ms};
use crate::io::runner::Runner;
use crate::io::xdp::pins::PinDir;
use crate::io::xdp::{XdpFastPath, XdpSetting};
use crate::io::{offload, signals, FramePort};
use crate::reload::Reloader;

/// Run the gateway until a shutdown signal; `reloader` holds `settings`
/// and re-reads the file on SIGHUP.
pub fn run(mut reloader: Reloader) -> anyhow::Result<()> {
    // A copy: the reloader's own copy changes on SIGHUP.
    let start = reloader.running().clone();
    let settings = &start;
    let keys = match &settings.secret_file {
        Some(path) => CookieKeys::load(path).context("loading the cookie secret")?,
        None => {
            tracing::warn!("no cookies.secret_file: using a random secret; cookies do not survive a restart and instances will not agree (see `synguard keygen`)");
            CookieKeys::single(CookieSecret::generate().context("generating a cookie secret")?)
        }
    };
    let io_cfg = &settings.io;
    let client = open_port(&io_cfg.client_iface, io_cfg)?;
    let server = open_port(&io_cfg.server_iface, io_cfg)?;
    let mut engine = Engine::new(settings.engine.clone(), keys);
    engine.set_wall_clock(engine_clock_ms(), wall_clock_ms());
    let (mss_v4, mss_v6) = engine.set_port_mtus(client.mtu(), server.mtu());
    if (mss_v4, mss_v6) != (settings.engine.synack_mss_v4, settings.engine.synack_mss_v6) {
        tracing::warn!(
            client_mtu = client.mtu(),
            server_mtu = server.mtu(),
            mss_v4,
            mss_v6,
            "SYN-ACKs announce a smaller MSS than handshake.synack_mss_v4/v6: a port's MTU cannot carry larger segments"
        );
    }
    // Before the endpoints: loading the program (the verifier) takes a
    // moment, and an answering /metrics is what operators and the lab take
    // for "up".
    let xdp = start_xdp(io_cfg, &settings.engine)?;
    let _metrics = match settings.metrics_listen {
        Some(addr) => {
            let server = crate::metrics::serve(addr, crate::metrics::registry(engine.counters()))
                .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
            tracing::info!(listen = %server.local_addr, "serving /metrics");
            Some(server)
        }
        None => None,
    };
    let _control = match &settings.control_socket {
        Some(path) => {
            let server = ControlServer::start(path, engine.status_view())?;
            tracing::info!(socket = %server.path().display(), "control endpoint for `synguard status`");
            Some(server)
        }
        None => None,
    };
    signals::install().context("installing SIGINT/SIGTERM/SIGHUP handlers")?;
    // Only now, with start-up done and SIGTERM handled: a start that fails
    // or is stopped before this point leaves the file for the next one.
    if let Some(path) = &settings.flow_file {
        restore_flows(&mut engine, path, io_cfg);
    }
    let mut xdp = xdp;
    if let Some(x) = &mut xdp {
        adopt_forwarded_flows(&mut engine, x);
    }
    let protected: Vec<String> = settings
        .engine
        .protected
        .iter()
        .map(|s| s.to_string())
        .collect();
    tracing::info!(client = %io_cfg.client_iface, server = %io_cfg.server_iface, protect = %protected.join(","), "synguard running");
    let mut runner = Runner::new(engine, client, server);
    if let Some(x) = xdp {
        runner.set_fast_path(x, engine_clock_ms());
    }
    // Ready only now: ports open and SIGHUP handled (its default action
    // would end the process). Outside systemd this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let result = runner.run_until_shutdown(|engine| reloader.on_signal(engine));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // Also when the loop failed: the flows are as good as they were, and
    // systemd's Restart=on-failure then starts a process that takes them.
    // The path in effect now (a reload may have changed it).
    if let Some(path) = &reloader.running().flow_file {
        save_flows(&runner.engine, path, io_cfg);
    }
    result.context("I/O loop")?;
    let c = runner.engine.counters();
    tracing::info!(
        syn = c.syn_received.load(std::sync::atomic::Ordering::Relaxed),
        cookies_validated = c
            .cookies_validated
            .load(std::sync::atomic::Ordering::Relaxed),
        flows = runner.engine.flow_count(),
        send_errors = runner.send_errors(),
        "shutting down"
    );
    Ok(())
}

/// Take the established flows an earlier process left being forwarded in
/// the pinned XDP flow map (after a crash the only record of them; after a
/// SIGTERM also in the flow file, which then wins as the fuller one), and
/// run the timers that passed meanwhile.
fn adopt_forwarded_flows(engine: &mut Engine, x: &mut XdpFastPath) {
    let adopted = x.take_adopted_flows();
    if adopted.is_empty() {
        return;
    }
    let given = adopted.len();
    let now = engine_clock_ms();
    let r = engine.adopt_forwarded_flows(now, adopted);
    engine.handle_timeout(now);
    tracing::info!(
        restored = r.restored,
        given,
        not_protected = r.not_protected,
        no_room = r.no_room,
        already_restored = r.duplicate,
        invalid = r.invalid,
        "took over the flows the XDP programs kept forwarding"
    );
}

/// Take the flows the previous run left in `path` into the engine, and
/// run the timers that passed meanwhile before any frame; a file that
/// cannot be used is logged, never fatal (the gateway then starts empty, as
/// without the file). Also says now, not at the stop, when `path` cannot
/// be written.
fn restore_flows(engine: &mut Engine, path: &std::path::Path, io_cfg: &crate::io::IoConfig) {
    use flow_file::FlowFileError;
    match flow_file::take(
        path,
        &io_cfg.client_iface,
        &io_cfg.server_iface,
        &flow_file::Clocks::now(),
    ) {
        Ok(None) => tracing::info!(file = %path.display(), "no flows left by a previous run"),
        Ok(Some(loaded)) => {
            let given = loaded.flows.len();
            let r = engine.import_flows(loaded.flows);
            let now = engine_clock_ms();
            engine.handle_timeout(now);
            tracing::info!(
                file = %path.display(),
                restored = r.restored,
                given,
                not_protected = r.not_protected,
                no_room = r.no_room,
                duplicate = r.duplicate,
                invalid = r.invalid,
                still_open = engine.flow_count(),
                written_ms_ago = loaded.written_ago_ms,
                "took over the flows of the previous run"
            );
            if let Some(e) = loaded.not_removed {
                tracing::warn!(file = %path.display(), error = %e, "could not remove the flow file after reading it: remove it, or the next start takes these flows again");
            }
        }
        Err(e @ FlowFileError::OtherInterfaces { .. }) => tracing::error!(
            error = %e,
            "the flow file belongs to another instance: left in place, starting without flows (give each instance its own state.flow_file)"
        ),
        Err(e @ FlowFileError::Invalid { .. }) => tracing::error!(
            error = %e,
            set_aside = %flow_file::rejected_path(path).display(),
            "cannot use the flow file: starting without those flows"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the flow file: left in place, starting without flows")
        }
    }
    if let Err(e) = flow_file::check_writable(path) {
        tracing::error!(error = %e, "the flow file cannot be written: flows will not survive the next restart");
    }
}

/// Leave the engine's flows in `path` for the next start; logs the outcome.
fn save_flows(engine: &Engine, path: &std::path::Path, io_cfg: &crate::io::IoConfig) {
    let flows = engine.export_flows();
    let now = flow_file::Clocks::now();
    match flow_file::save(
        path,
        &io_cfg.client_iface,
        &io_cfg.server_iface,
        &now,
        flows,
    ) {
        Ok(n) => tracing::info!(
            file = %path.display(),
            flows = n,
            "flows left for the next start on these interfaces"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot write the flow file: its flows end with this process")
        }
    }
}

/// Load and attach the XDP fast path as `io.xdp` says (README "XDP fast
/// path"); `auto` falls back to off with a warning, the explicit modes fail.
fn start_xdp(
    io_cfg: &crate::io::IoConfig,
    engine: &crate::engine::EngineConfig,
) -> anyhow::Result<Option<XdpFastPath>> {
    let setting = io_cfg.xdp;
    if setting == XdpSetting::Off {
        return Ok(None);
    }
    let iface = &io_cfg.client_iface;
    let server = &io_cfg.server_iface;
    let mtu = offload::mtu(iface).with_context(|| format!("reading the MTU of `{iface}`"))?;
    let server_mtu =
        offload::mtu(server).with_context(|| format!("reading the MTU of `{server}`"))?;
    let max_tracked = engine.max_flows + engine.backlog;
    let pins = io_cfg.xdp_pin_dir.as_ref().and_then(|base| {
        let made = PinDir::for_instance(base, iface, server).and_then(|p| p.create().map(|()| p));
        match made {
            Ok(p) => Some(p),
            // The fast path still runs; only a restart costs its flows.
            Err(e) => {
                tracing::warn!(error = %e, "XDP pins unavailable: the XDP data path and its flows end with this process");
                None
            }
        }
    });
    let loaded = match pins {
        Some(pins) => XdpFastPath::load_pinned(max_tracked, pins),
        None => XdpFastPath::load(max_tracked),
    };
    let attached = loaded.and_then(|mut x| {
        x.attach((iface, mtu), (server, server_mtu), setting)?;
        Ok(x)
    });
    match attached {
        Ok(x) => {
            let [to_client, to_server] = x.redirect_targets();
            tracing::info!(
                iface = %iface,
                server_iface = %server,
                mode = x.active().as_str(),
                forwards_to_client = to_client,
                forwards_to_server = to_server,
                "XDP fast path attached"
            );
            Ok(Some(x))
        }
        Err(e) if setting == XdpSetting::Auto => {
            tracing::warn!(iface = %iface, error = %e, "XDP fast path off: every SYN goes through AF_PACKET");
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::from(e)),
    }
}

fn open_port(name: &str, io_cfg: &crate::io::IoConfig) -> anyhow::Result<PacketPort> {
    let port = PacketPort::open(name, io_cfg.rcvbuf_bytes).map_err(anyhow::Error::from)?;
    let mtu = offload::mtu(name).with_context(|| format!("reading the MTU of `{name}`"))?;
    if io_cfg.disable_offloads {
        let results = offload::disable_offloads(name)
            .with_context(|| format!("turning offloads off on `{name}`"))?;
        let mut off: Vec<_> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(l, _)| *l)
            .collect();
        let mut refused: Vec<_> = results
            .iter()
            .filter_map(|(l, r)| r.as_ref().err().map(|e| format!("{l}: {e}")))
            .collect();
        // LRO and hardware GRO merge frames on the NIC, where no later
        // setting splits them again: a port that keeps one on would drop
        // every merged frame as oversize, so it is refused.
        match offload::disable_rx_aggregation(name) {
            Ok(a) if !a.still_on.is_empty() => anyhow::bail!(
                "`{name}` keeps {} on (the driver refused to turn it off): it merges received frames beyond the MTU, which synguard can only drop as oversize; turn it off (`ethtool -K {name} {} off`) or use another interface",
                a.still_on.join(", "),
                a.still_on.join(" off ")
            ),
            Ok(a) => off.extend(a.turned_off),
            Err(e) => refused.push(format!("receive aggregation: {e}")),
        }
        tracing::info!(iface = name, off = %off.join(","), "offloads turned off (frames must be wire-sized with full checksums)");
        if !refused.is_empty() {
            tracing::warn!(iface = name, refused = %refused.join("; "), "driver refused to turn some offloads off; oversize frames will be counted and dropped");
        }
    } else {
        // Only to say more in the warning: unreadable features say nothing.
        let on = offload::rx_aggregation_on(name).unwrap_or_default();
        let also = if on.is_empty() {
            String::new()
        } else {
            format!(" (and {} is on)", on.join(", "))
        };
        tracing::warn!(iface = name, "io.disable_offloads = false: GRO/GSO frames larger than the MTU are dropped (reason oversize){also}");
    }
    Ok(port.with_mtu(mtu))
}
