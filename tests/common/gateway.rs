//! The gateway under test: starting synguard in the lab's gateway namespace (from
//! flags, or with a temporary config file), or the Linux-bridge stand-in
//! (`SYNGUARD_LAB_STANDIN=bridge`); waiting until its /metrics answers; its liveness,
//! exit status, PID, log tail and stop; `synguard status` against the lab's own
//! control socket; and scraping its metrics inside the gateway namespace. It never
//! starts a second gateway in one lab, never uses the system-wide control socket, and
//! never scrapes from outside the gateway namespace.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::commands::{run, tail_file, terminate_child};
use super::lab::{srv_v4, srv_v6, Lab, GW_CLIENT_IF, GW_SERVER_IF, PROTECTED_PORT};
use super::netns::in_netns;
use super::prometheus::{http_get, Metrics};
/// Where the gateway serves metrics, inside the gateway namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:9150";
/// Longest delay before the XDP program's counters show in /metrics.
pub const XDP_COUNTER_LAG: Duration = Duration::from_millis(400);
/// The gateway binary built by cargo for this test crate.
pub const SYNGUARD_BIN: &str = env!("CARGO_BIN_EXE_synguard");

/// `SYNGUARD_LAB_XDP`, when set: the `--xdp` mode every lab gateway runs with.
pub fn lab_xdp_from_env() -> Option<String> {
    match std::env::var("SYNGUARD_LAB_XDP") {
        Ok(v) if v.is_empty() => None,
        Ok(v) if ["auto", "native", "generic", "off"].contains(&v.as_str()) => Some(v),
        Ok(v) => panic!("SYNGUARD_LAB_XDP={v:?}: expected auto, native, generic or off"),
        Err(_) => None,
    }
}

impl Lab {
    // ---- gateway ---------------------------------------------------------------

    /// Starts the gateway: `synguard run --client-iface gwc --server-iface gws --protect
    /// 198.18.0.2:8080 --protect [2001:db8::2]:8080 --metrics-listen 127.0.0.1:9150
    /// EXTRA...` in the gateway namespace, and waits (<= 10 s) until /metrics answers
    /// and the log says "synguard running".
    /// With the stand-in, builds br0 instead.
    pub fn start_gateway(&self, extra_args: &[&str]) {
        let v4 = srv_v4(PROTECTED_PORT).to_string();
        let v6 = srv_v6(PROTECTED_PORT).to_string();
        let mut args = vec!["--protect", &v4, "--protect", &v6];
        args.extend_from_slice(extra_args);
        self.start_gateway_without_services(&args);
    }

    /// [`Lab::start_gateway`] without the `--protect` flags: the services
    /// come from `args` (flags or a config file, which a reload re-reads).
    pub fn start_gateway_without_services(&self, args: &[&str]) {
        let control = self.control_socket().display().to_string();
        let mut all = vec![
            "run",
            "--control-socket",
            &control,
            "--client-iface",
            GW_CLIENT_IF,
            "--server-iface",
            GW_SERVER_IF,
            "--metrics-listen",
            METRICS_ADDR,
        ];
        // `SYNGUARD_LAB_XDP=off` (or native, generic, auto) runs the suite with
        // that io.xdp; unset, the gateway's own default (tests/run-all.sh runs
        // the lab suite both ways).
        let xdp = lab_xdp_from_env();
        if let Some(mode) = &xdp {
            all.extend_from_slice(&["--xdp", mode]);
        }
        all.extend_from_slice(args);
        self.start_gateway_with(SYNGUARD_BIN, &all);
    }

    /// This lab's gateway control socket (for `synguard status`), so labs never
    /// share the default /run/synguard/control.sock.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// `synguard status ARGS` against this lab's gateway; (exit code, stdout, stderr).
    pub fn status(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(SYNGUARD_BIN)
            .arg("status")
            .arg("--control-socket")
            .arg(self.control_socket())
            .args(args)
            .output()
            .expect("spawn synguard status");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `bin ARGS` (full argument list, e.g. from `run` on) in the gateway
    /// namespace with stderr+stdout to `gateway_log`; waits for /metrics on METRICS_ADDR.
    pub fn start_gateway_with(&self, bin: &str, args: &[&str]) {
        assert!(
            !self.gateway_started.swap(true, Ordering::SeqCst),
            "gateway already started in this lab"
        );
        if self.standin {
            eprintln!(
                "[lab] STAND-IN: Linux bridge br0 in {} (no synguard)",
                self.gw
            );
            run(
                "ip",
                &[
                    "-n",
                    &self.gw,
                    "link",
                    "add",
                    "br0",
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "forward_delay",
                    "0",
                    "mcast_snooping",
                    "0",
                ],
            );
            for dev in [GW_CLIENT_IF, GW_SERVER_IF] {
                run("ip", &["-n", &self.gw, "link", "set", dev, "master", "br0"]);
            }
            run("ip", &["-n", &self.gw, "link", "set", "br0", "up"]);
            return;
        }
        assert!(
            PathBuf::from(bin).is_file(),
            "gateway binary {bin} does not exist"
        );
        let log = File::create(&self.gateway_log)
            .unwrap_or_else(|e| panic!("create {}: {e}", self.gateway_log.display()));
        // nsenter, not `ip netns exec`: that one mounts a fresh /sys for
        // the namespace, without the bpffs at /sys/fs/bpf where synguard
        // pins its XDP data path (a bpffs mounted anew would be another
        // instance, gone with the process). Both exec the program.
        let netns = format!("--net=/run/netns/{}", self.gw);
        let child = Command::new("nsenter")
            .args([netns.as_str(), "--", bin])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        eprintln!(
            "[lab] gateway pid {} in {}: {bin} {} (log {})",
            child.id(),
            self.gw,
            args.join(" "),
            self.gateway_log.display()
        );
        *self.gateway.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.gateway_exit_status() {
                panic!(
                    "gateway exited during start-up ({st}); log tail:\n{}",
                    tail_file(&self.gateway_log, 40)
                );
            }
            let last_err = match in_netns(&self.gw, || {
                http_get(METRICS_ADDR, "/metrics", Duration::from_millis(500))
            }) {
                Ok(_) => break,
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "gateway metrics on {METRICS_ADDR} not answering after 10 s ({last_err}); \
                     log tail:\n{}",
                    tail_file(&self.gateway_log, 40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        // /metrics answers before the start-up is done (flows restored from
        // a flow file or adopted from the pinned XDP map come after it):
        // "synguard running" is the last start-up line.
        while !fs::read_to_string(&self.gateway_log)
            .unwrap_or_default()
            .contains("synguard running")
        {
            if let Some(st) = self.gateway_exit_status() {
                panic!(
                    "gateway exited during start-up ({st}); log tail:\n{}",
                    tail_file(&self.gateway_log, 40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "gateway log has no \"synguard running\" after 10 s; log tail:\n{}",
                    tail_file(&self.gateway_log, 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Some(status) if the gateway process has exited, None if running or not started.
    pub fn gateway_exit_status(&self) -> Option<ExitStatus> {
        let mut g = self.gateway.lock().unwrap();
        g.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Panics (with the log tail) if the gateway is not running any more.
    pub fn assert_gateway_alive(&self) {
        if let Some(st) = self.gateway_exit_status() {
            panic!(
                "gateway died ({st}); log tail:\n{}",
                tail_file(&self.gateway_log, 40)
            );
        }
    }

    /// Sends SIGTERM to the gateway and waits (<= 5 s); returns its exit status.
    /// The gateway may then be started again (a restart).
    pub fn stop_gateway(&self) -> Option<ExitStatus> {
        let child = self.gateway.lock().unwrap().take();
        let status = child.and_then(|mut c| terminate_child(&mut c, Duration::from_secs(5)));
        self.gateway_started.store(false, Ordering::SeqCst);
        status
    }

    /// SIGKILL the gateway (a crash: it writes nothing) and reap it.
    pub fn kill_gateway(&self) {
        let child = self.gateway.lock().unwrap().take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.gateway_started.store(false, Ordering::SeqCst);
    }

    /// Last `n` lines of the gateway log.
    pub fn gateway_log_tail(&self, n: usize) -> String {
        tail_file(&self.gateway_log, n)
    }

    // ---- metrics ---------------------------------------------------------------

    /// Raw /metrics text, scraped inside the gateway namespace. Panics with the stand-in.
    pub fn metrics_text(&self) -> String {
        assert!(
            !self.standin,
            "gateway metrics requested, but SYNGUARD_LAB_STANDIN=bridge has no metrics \
             (this test needs the real synguard)"
        );
        in_netns(&self.gw, || {
            http_get(METRICS_ADDR, "/metrics", Duration::from_secs(5))
        })
        .unwrap_or_else(|e| {
            panic!(
                "scrape {METRICS_ADDR}/metrics: {e}; gateway log tail:\n{}",
                self.gateway_log_tail(20)
            )
        })
    }

    /// Parsed metrics snapshot (see [`Metrics`]).
    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&self.metrics_text())
    }

    /// A snapshot taken once what the XDP fast path answered or dropped so
    /// far has reached /metrics (folded every 100 ms, src/io/runner.rs, plus
    /// at most one 200 ms idle wait of the I/O loop).
    pub fn metrics_settled(&self) -> Metrics {
        thread::sleep(XDP_COUNTER_LAG);
        self.metrics()
    }

    /// Polls the metrics every 25 ms until `pred` holds (returns that snapshot and the
    /// time waited) or `timeout` passes (returns Err with the last snapshot).
    pub fn wait_metrics(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Metrics) -> bool,
    ) -> Result<(Metrics, Duration), Metrics> {
        let start = Instant::now();
        loop {
            let m = self.metrics();
            if pred(&m) {
                return Ok((m, start.elapsed()));
            }
            if start.elapsed() >= timeout {
                return Err(m);
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    // ---- gateway with a config file ----------------------------------------------

    /// [`Lab::start_gateway`] with `--config FILE`, FILE holding `toml` (e.g. only a
    /// `[syn_queue]` and a `[timeouts]` section: interfaces, services and the metrics
    /// address come from the flags). The file has a unique name in the lab directory
    /// and is removed as soon as the gateway has read it (also when start-up fails).
    pub fn start_gateway_with_config(&self, toml: &str, extra_args: &[&str]) {
        static CFG_SEQ: AtomicU32 = AtomicU32::new(0);
        let path = self.dir.join(format!(
            "synguard-{}.toml",
            CFG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        struct RemoveOnDrop(PathBuf);
        impl Drop for RemoveOnDrop {
            fn drop(&mut self) {
                let _ = fs::remove_file(&self.0);
            }
        }
        fs::write(&path, toml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let _guard = RemoveOnDrop(path.clone());
        eprintln!("[lab] gateway config {}:\n{toml}", path.display());
        let p = path.to_string_lossy().into_owned();
        let mut args = vec!["--config", p.as_str()];
        args.extend_from_slice(extra_args);
        self.start_gateway(&args);
    }

    /// PID of the running gateway (synguard itself: nsenter execs it).
    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateway.lock().unwrap().as_ref().map(|c| c.id())
    }
}
