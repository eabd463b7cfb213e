//! SIGHUP reload: re-reads the configuration file with the command-line
//! overrides the gateway was started with, validates it, applies what can
//! change at run time (to the engine through `Engine::reconfigure`, and the
//! log filter) and logs one line saying what was applied and what needs a
//! restart. A file that does not validate changes nothing. The cookie
//! secret file is read again on every reload, so a rotated key takes effect
//! (`CookieMinter::set_keys`). Never opens sockets or touches interfaces;
//! interfaces and listeners are set up once at start (`gateway`).

use std::path::PathBuf;

use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{self, ConfigError, Overrides, Settings};
use crate::cookie::CookieKeys;
use crate::engine::reconfigure::ReconfigureReport;
use crate::engine::Engine;
use crate::io::IoConfig;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("started without --config: there is no file to re-read")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new filter validated but the subscriber refused it.
    #[error("log.level: cannot apply \"{level}\": {reason}")]
    LogFilter { level: String, reason: String },
    /// A new flow file path the next stop could not write.
    #[error("state.flow_file: {0}")]
    FlowFile(#[from] crate::flow_file::FlowFileError),
    /// The secret file (re-read on every reload: a rotated key) is unusable.
    #[error("cookies.secret_file: {0}")]
    Secret(#[from] crate::cookie::SecretError),
}

/// The live log filter, installed by main as a `tracing_subscriber` reload
/// layer.
pub struct LogFilter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG was set at start; it wins over log.level, also on reload.
    env_wins: bool,
}

impl LogFilter {
    pub fn new(handle: reload::Handle<EnvFilter, Registry>, env_wins: bool) -> LogFilter {
        LogFilter { handle, env_wins }
    }
}

/// What one successful reload did, by config file key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub engine: ReconfigureReport,
    /// Non-engine keys applied (log.level, state.flow_file, and
    /// cookies.secret_file when the keys it names changed).
    pub applied: Vec<&'static str>,
    /// Non-engine keys whose new value needs a restart; the running value is
    /// kept (and reported again on the next reload until the restart).
    pub needs_restart: Vec<&'static str>,
    /// Changed but without effect: log.level while RUST_LOG is set.
    pub ignored: Vec<&'static str>,
}

impl ReloadSummary {
    pub fn applied(&self) -> Vec<&'static str> {
        let mut v = self.engine.applied.clone();
        v.extend(&self.applied);
        v
    }

    pub fn needs_restart(&self) -> Vec<&'static str> {
        let mut v = self.engine.needs_restart.clone();
        v.extend(&self.needs_restart);
        v
    }
}

/// Holds what a reload needs between signals: where the file is, the flags
/// that override it and the settings actually running.
pub struct Reloader {
    path: Option<PathBuf>,
    overrides: Overrides,
    running: Settings,
    log: Option<LogFilter>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        overrides: Overrides,
        running: Settings,
        log: Option<LogFilter>,
    ) -> Reloader {
        Reloader {
            path,
            overrides,
            running,
            log,
        }
    }

    /// The settings in effect (restart-only keys keep their start value).
    pub fn running(&self) -> &Settings {
        &self.running
    }

    /// Re-read and apply; on error nothing has changed.
    pub fn reload(&mut self, engine: &mut Engine) -> Result<ReloadSummary, ReloadError> {
        let path = self.path.as_deref().ok_or(ReloadError::NoFile)?;
        let new = config::load(Some(path), &self.overrides)?;
        let mut summary = ReloadSummary::default();
        let old = &self.running;
        // Destructured so a new Settings or IoConfig field does not compile
        // until it is classified here.
        let Settings {
            engine: new_engine,
            io,
            metrics_listen,
            secret_file,
            control_socket,
            flow_file,
            log_level,
        } = new;
        let IoConfig {
            client_iface,
            server_iface,
            rcvbuf_bytes,
            disable_offloads,
            xdp,
            xdp_pin_dir,
        } = &io;
        // Set up once at start: the AF_PACKET sockets, the interfaces'
        // offloads, the listeners and the cookie minter's secret.
        let restart_only = [
            ("interfaces.client", *client_iface != old.io.client_iface),
            ("interfaces.server", *server_iface != old.io.server_iface),
            ("io.rcvbuf_bytes", *rcvbuf_bytes != old.io.rcvbuf_bytes),
            (
                "io.disable_offloads",
                *disable_offloads != old.io.disable_offloads,
            ),
            // The program is attached (or not) at start.
            ("io.xdp", *xdp != old.io.xdp),
            ("io.xdp_pin_dir", *xdp_pin_dir != old.io.xdp_pin_dir),
            ("metrics.listen", metrics_listen != old.metrics_listen),
            ("control.socket", control_socket != old.control_socket),
            // Without a file the key is a random one made at start: taking
            // the file away would lose it (and the fleet's agreement).
            (
                "cookies.secret_file",
                secret_file.is_none() && old.secret_file.is_some(),
            ),
        ];
        summary.needs_restart.extend(
            restart_only
                .iter()
                .filter(|(_, changed)| *changed)
                .map(|(k, _)| *k),
        );
        // Read at start, written at stop: the new path is the one the
        // stop will write, so it must be writable now (checked before anything is applied).
        let flow_file_changed = flow_file != old.flow_file;
        if flow_file_changed {
            if let Some(p) = &flow_file {
                crate::flow_file::check_writable(p)?;
            }
        }
        // Read before anything is applied: a bad file rejects the reload.
        let keys = match &secret_file {
            Some(path) => Some(CookieKeys::load(path)?),
            None => None,
        };
        let log_changed = log_level != old.log_level;
        if log_changed {
            match &self.log {
                Some(filter) if filter.env_wins => summary.ignored.push("log.level"),
                Some(filter) => {
                    // Validated by config::load, so it parses here too.
                    let refused = |reason: String| ReloadError::LogFilter {
                        level: log_level.clone(),
                        reason,
                    };
                    let parsed =
                        EnvFilter::try_new(&log_level).map_err(|e| refused(e.to_string()))?;
                    filter
                        .handle
                        .reload(parsed)
                        .map_err(|e| refused(e.to_string()))?;
                    summary.applied.push("log.level");
                }
                None => summary.needs_restart.push("log.level"),
            }
        }
        let now_ms = crate::io::clock::engine_clock_ms();
        summary.engine = engine.reconfigure(now_ms, new_engine);
        if let Some(keys) = keys {
            if engine.set_cookie_keys(now_ms, keys) || secret_file != old.secret_file {
                summary.applied.push("cookies.secret_file");
            }
            self.running.secret_file = secret_file;
        }
        if flow_file_changed {
            summary.applied.push("state.flow_file");
            self.running.flow_file = flow_file;
        }
        self.running.engine = engine.config().clone();
        if log_changed && !summary.needs_restart.contains(&"log.level") {
            self.running.log_level = log_level;
        }
        Ok(summary)
    }

    /// The SIGHUP handler body: reload and log the one line that says what
    /// happened. Tells systemd (Type=notify) it is reloading meanwhile.
    pub fn on_signal(&mut self, engine: &mut Engine) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
        let file = self
            .path
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string());
        match self.reload(engine) {
            Ok(s)
                if s.applied().is_empty()
                    && s.needs_restart().is_empty()
                    && s.ignored.is_empty() =>
            {
                tracing::info!(%file, "configuration reloaded: no changes");
            }
            Ok(s) => tracing::info!("{}", describe(&file, &s)),
            Err(e) => {
                tracing::error!(%file, error = %e, "configuration reload rejected; still running the previous configuration");
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }
}

/// The reload log line: what was applied and what needs a restart, leaving
/// out empty parts.
fn describe(file: &str, s: &ReloadSummary) -> String {
    let list = |v: &[&str]| v.join(", ");
    let addrs = |v: &[std::net::SocketAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !s.applied().is_empty() {
        parts.push(format!("applied: {}", list(&s.applied())));
    }
    if !s.engine.services_added.is_empty() {
        parts.push(format!(
            "services added: {}",
            addrs(&s.engine.services_added)
        ));
    }
    if !s.engine.services_removed.is_empty() {
        parts.push(format!(
            "services removed: {} ({} tracked connections finish as they started)",
            addrs(&s.engine.services_removed),
            s.engine.connections_kept
        ));
    }
    if !s.needs_restart().is_empty() {
        parts.push(format!(
            "needs a restart (running value kept): {}",
            list(&s.needs_restart())
        ));
    }
    if !s.ignored.is_empty() {
        parts.push(format!(
            "ignored because RUST_LOG is set: {}",
            list(&s.ignored)
        ));
    }
    format!("configuration reloaded from {file}; {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::cookie::CookieSecret;
    use crate::engine::Port;

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn shipped() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/synguard.toml"))
            .unwrap()
    }

    fn scratch(name: &str, text: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "synguard-reload-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&p, text).unwrap();
        Scratch(p)
    }

    /// A reloader over `file` with a live log filter (not the global one),
    /// and an engine built from the file as `run` would build it.
    fn start(
        file: &Scratch,
        overrides: Overrides,
        env_wins: bool,
    ) -> (Reloader, Engine, impl Drop) {
        let settings = config::load(Some(&file.0), &overrides).unwrap();
        let (layer, handle) = reload::Layer::new(EnvFilter::new(&settings.log_level));
        let subscriber = Registry::default().with(layer);
        let guard = tracing::subscriber::set_default(subscriber);
        let engine = Engine::new(settings.engine.clone(), CookieSecret::from_bytes([9; 16]));
        let log = LogFilter::new(handle.clone(), env_wins);
        (
            Reloader::new(Some(file.0.clone()), overrides, settings, Some(log)),
            engine,
            guard,
        )
    }

    fn udp_frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ]);
        f.resize(14 + 28, 0);
        f
    }

    #[test]
    fn valid_change_is_applied_and_counters_survive() {
        let file = scratch("valid", &shipped());
        let flows =
            std::env::temp_dir().join(format!("synguard-reload-{}-flows.json", std::process::id()));
        let (mut r, mut engine, _guard) = start(&file, Overrides::default(), false);
        let mut f = udp_frame();
        engine.handle(1_700_000_000_000, Port::Client, &mut f);
        let counters = engine.counters();
        assert_eq!(counters.bridged.load(Ordering::Relaxed), 1);

        let edited = shipped()
            .replace("max_flows = 1000000", "max_flows = 5000")
            .replace("level = \"info\"", "level = \"debug\"")
            .replace("listen = \"127.0.0.1:9150\"", "listen = \"127.0.0.1:9151\"")
            .replace(
                "services = [\"198.18.0.2:8080\", \"[2001:db8::2]:8080\"]",
                "services = [\"198.18.0.2:8080\"]",
            )
            .replace(
                "flow_file = \"/var/lib/synguard/flows.json\"",
                &format!("flow_file = \"{}\"", flows.display()),
            );
        std::fs::write(&file.0, edited).unwrap();
        let s = r.reload(&mut engine).unwrap();
        assert_eq!(
            s.applied(),
            vec![
                "limits.max_flows",
                "protect.services",
                "log.level",
                "state.flow_file"
            ]
        );
        assert_eq!(
            r.running().flow_file,
            Some(flows.clone()),
            "the next stop writes the new path"
        );
        assert_eq!(s.needs_restart(), vec!["metrics.listen"]);
        assert_eq!(
            s.engine.services_removed,
            vec!["[2001:db8::2]:8080".parse().unwrap()]
        );
        assert_eq!(engine.config().max_flows, 5000);
        assert_eq!(counters.flows_limit.load(Ordering::Relaxed), 5000);
        assert_eq!(counters.bridged.load(Ordering::Relaxed), 1, "not reset");
        assert!(
            tracing::enabled!(tracing::Level::DEBUG),
            "log level applied"
        );
        assert_eq!(r.running().log_level, "debug");
        assert_eq!(
            r.running().metrics_listen,
            Some("127.0.0.1:9150".parse().unwrap()),
            "restart-only key keeps the running value"
        );

        assert_eq!(
            describe("f.toml", &s),
            "configuration reloaded from f.toml; applied: limits.max_flows, protect.services, \
             log.level, state.flow_file; services removed: [2001:db8::2]:8080 (0 tracked connections finish as they started); \
             needs a restart (running value kept): metrics.listen"
        );

        // Nothing new: the pending restart is reported again, nothing applied.
        let again = r.reload(&mut engine).unwrap();
        assert!(again.applied().is_empty(), "{again:?}");
        assert_eq!(again.needs_restart(), vec!["metrics.listen"]);
    }

    /// The secret file is read on every reload: a new key mints from then
    /// on and the old one stays accepted; a bad file rejects the reload; a
    /// config without the file keeps the running keys.
    #[test]
    fn a_rotated_secret_is_taken_and_a_bad_one_rejected() {
        let secret = Scratch(
            std::env::temp_dir().join(format!("synguard-reload-{}-secret", std::process::id())),
        );
        // The key `start` builds the engine with.
        std::fs::write(&secret.0, "09".repeat(16)).unwrap();
        let with_secret = shipped().replace(
            "# secret_file = \"/etc/synguard/secret\"",
            &format!("secret_file = \"{}\"", secret.0.display()),
        );
        assert_ne!(with_secret, shipped());
        let file = scratch("secret", &with_secret);
        let (mut r, mut engine, _guard) = start(&file, Overrides::default(), false);
        let same = r.reload(&mut engine).unwrap();
        assert!(same.applied().is_empty(), "the same key: {same:?}");

        std::fs::write(&secret.0, format!("{}\n", "5a".repeat(16))).unwrap();
        let s = r.reload(&mut engine).unwrap();
        assert_eq!(s.applied(), vec!["cookies.secret_file"]);
        let now_ms = crate::io::clock::engine_clock_ms();
        let p = engine.fast_path_params(now_ms);
        assert_eq!(p.siphash_key, [0x5a; 16]);
        assert_eq!(p.accepted_key, [9; 16], "the old key is still accepted");
        assert!(p.accepted_until_secs > now_ms / 1000);
        assert!(
            p.accepted_until_secs <= now_ms / 1000 + 128,
            "two slots at most"
        );

        std::fs::write(&secret.0, "5a".repeat(15)).unwrap();
        let err = r.reload(&mut engine).unwrap_err().to_string();
        assert!(
            err.starts_with("cookies.secret_file: cookie secret ")
                && err.contains("expected 32 hex characters"),
            "{err}"
        );
        assert_eq!(engine.fast_path_params(now_ms).siphash_key, [0x5a; 16]);

        std::fs::write(&file.0, shipped()).unwrap();
        let s = r.reload(&mut engine).unwrap();
        assert_eq!(s.needs_restart(), vec!["cookies.secret_file"]);
        assert_eq!(r.running().secret_file, Some(secret.0.clone()));
        assert_eq!(engine.fast_path_params(now_ms).siphash_key, [0x5a; 16]);
    }

    #[test]
    fn a_flow_file_the_stop_could_not_write_is_rejected() {
        let file = scratch("flows", &shipped());
        let (mut r, mut engine, _guard) = start(&file, Overrides::default(), false);
        let before = r.running().clone();
        std::fs::write(
            &file.0,
            shipped()
                .replace(
                    "flow_file = \"/var/lib/synguard/flows.json\"",
                    "flow_file = \"/nonexistent-synguard-dir/flows.json\"",
                )
                .replace("max_flows = 1000000", "max_flows = 5000"),
        )
        .unwrap();
        let err = r.reload(&mut engine).unwrap_err().to_string();
        assert!(
            err.starts_with("state.flow_file: /nonexistent-synguard-dir/flows.json.tmp: "),
            "{err}"
        );
        assert_eq!(r.running(), &before, "nothing applied");
        assert_eq!(engine.config().max_flows, 1_000_000);
    }

    #[test]
    fn bad_change_is_rejected_and_the_running_config_kept() {
        let file = scratch("bad", &shipped());
        let (mut r, mut engine, _guard) = start(&file, Overrides::default(), false);
        let before = engine.config().clone();
        let mut f = udp_frame();
        engine.handle(1_700_000_000_000, Port::Client, &mut f);

        std::fs::write(
            &file.0,
            shipped()
                .replace("max_flows = 1000000", "max_flows = 5000")
                .replace("backlog = 4096", "backlog = 0"),
        )
        .unwrap();
        let err = r.reload(&mut engine).unwrap_err();
        assert!(err.to_string().contains("syn_queue.backlog"), "{err}");
        assert_eq!(engine.config(), &before, "nothing applied");
        assert_eq!(engine.counters().bridged.load(Ordering::Relaxed), 1);

        std::fs::write(&file.0, "[limits\n").unwrap();
        assert!(matches!(r.reload(&mut engine), Err(ReloadError::Config(_))));
        std::fs::remove_file(&file.0).unwrap();
        let err = r.reload(&mut engine).unwrap_err();
        assert!(
            err.to_string().contains(&file.0.display().to_string()),
            "{err}"
        );
        assert_eq!(engine.config(), &before);
        assert!(
            !tracing::enabled!(tracing::Level::DEBUG),
            "log level unchanged"
        );
    }

    #[test]
    fn flags_still_win_and_rust_log_keeps_the_level() {
        let file = scratch("flags", &shipped());
        let overrides = Overrides {
            protect: vec!["198.18.0.9:22".parse().unwrap()],
            ..Overrides::default()
        };
        let (mut r, mut engine, _guard) = start(&file, overrides, true);
        std::fs::write(
            &file.0,
            shipped()
                .replace("level = \"info\"", "level = \"debug\"")
                .replace("\"198.18.0.2:8080\", ", ""),
        )
        .unwrap();
        let s = r.reload(&mut engine).unwrap();
        assert!(s.applied().is_empty(), "{s:?}");
        assert_eq!(s.ignored, vec!["log.level"]);
        assert_eq!(
            engine.config().protected,
            vec!["198.18.0.9:22".parse().unwrap()]
        );
        assert!(!tracing::enabled!(tracing::Level::DEBUG));
    }

    #[test]
    fn without_a_file_there_is_nothing_to_reload() {
        let settings = config::load_str(&shipped(), &Overrides::default()).unwrap();
        let mut engine = Engine::new(settings.engine.clone(), CookieSecret::from_bytes([9; 16]));
        let mut r = Reloader::new(None, Overrides::default(), settings, None);
        assert!(matches!(r.reload(&mut engine), Err(ReloadError::NoFile)));
    }
}
