//! The control socket server: a thread accepting connections on a Unix
//! socket (mode 0600), answering each status request from a `StatusView`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::status::{is_state_name, StatusView};
use crate::io::clock::engine_clock_ms;

use super::protocol::{Connection, Reply, StateCount, StatusReply, StatusRequest};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;

pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlServerError {
    #[error("control socket {path} is in use by a running synguard (set control.socket or --control-socket)")]
    InUse { path: PathBuf },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl ControlServer {
    pub fn start(path: &Path, view: StatusView) -> Result<ControlServer, ControlServerError> {
        let io_err = |source| ControlServerError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlServerError::InUse {
                    path: path.to_path_buf(),
                });
            }
            // A socket file left by a gateway that did not exit cleanly.
            std::fs::remove_file(path).map_err(io_err)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(s) = stream {
                        if let Err(e) = serve_one(s, &view) {
                            tracing::debug!(error = %e, "control request failed");
                        }
                    }
                }
            })
            .map_err(io_err)?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(stream: UnixStream, view: &StatusView) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<StatusRequest>(&line) {
        Ok(req) => answer(&req, view, engine_clock_ms()),
        Err(e) => Reply::Error(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// Build the reply to `req` at time `now_ms`.
pub fn answer(req: &StatusRequest, view: &StatusView, now_ms: u64) -> Reply {
    if let Some(state) = &req.state {
        if !is_state_name(state) {
            return Reply::Error(format!("unknown state `{state}`"));
        }
    }
    let (rows, truncated) = view.rows(now_ms, req.state.as_deref(), req.limit);
    let c = view.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Reply::Status(StatusReply {
        version: env!("CARGO_PKG_VERSION").to_string(),
        syncookies: view.syncookies.as_str().to_string(),
        cookie_mode_active: load(&c.cookie_mode_active) == 1,
        syn_recv_limit: load(&c.syn_recv_limit),
        flows_limit: load(&c.flows_limit),
        counts: view
            .counts()
            .into_iter()
            .map(|(state, count)| StateCount {
                state: state.to_string(),
                count,
            })
            .collect(),
        connections: rows
            .into_iter()
            .map(|r| Connection {
                state: r.state.to_string(),
                client: r.client.to_string(),
                server: r.server.to_string(),
                age_seconds: r.age_ms as f64 / 1000.0,
                idle_seconds: r.idle_ms as f64 / 1000.0,
                retransmits: r.retransmits,
            })
            .collect(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{query, render_text};
    use crate::cookie::CookieSecret;
    use crate::engine::{Engine, EngineConfig, Port, Verdict};
    use crate::wire::tcp::{self, TcpSegmentSpec};
    use crate::wire::write_tcp_frame;

    fn syn(port: u16) -> Vec<u8> {
        let spec = TcpSegmentSpec {
            src_port: port,
            dst_port: 8080,
            seq: 7,
            ack: 0,
            flags: tcp::SYN,
            window: 1000,
            options: &[],
            payload: &[],
        };
        let mut f = Vec::new();
        let l2 = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0];
        write_tcp_frame(
            &mut f,
            &l2,
            "198.18.1.77".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            64,
            &spec,
        );
        f
    }

    #[test]
    fn status_over_the_socket_lists_syn_recv_entries() {
        let cfg = EngineConfig {
            protected: vec!["198.18.0.2:8080".parse().unwrap()],
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(cfg, CookieSecret::from_bytes([3; 16]));
        let now = engine_clock_ms();
        for port in [2001, 2002] {
            assert_eq!(
                engine.handle(now - 1500, Port::Client, &mut syn(port)),
                Verdict::Reply
            );
        }
        let path =
            std::env::temp_dir().join(format!("synguard-control-test-{}.sock", std::process::id()));
        let server = ControlServer::start(&path, engine.status_view()).unwrap();
        assert!(matches!(
            ControlServer::start(&path, engine.status_view()),
            Err(ControlServerError::InUse { .. })
        ));

        let (all, raw) = query(
            &path,
            &StatusRequest {
                state: None,
                limit: 10,
            },
        )
        .unwrap();
        assert!(raw.starts_with("{\"status\":"), "{raw}");
        assert_eq!(all.counts[0].state, "syn_recv");
        assert_eq!(all.counts[0].count, 2);
        assert_eq!(all.syn_recv_limit, 4096);
        assert_eq!(all.connections.len(), 2);
        let c = &all.connections[0];
        assert_eq!(c.state, "syn_recv");
        assert!(c.client.starts_with("198.18.1.77:200"));
        assert_eq!(c.server, "198.18.0.2:8080");
        assert!(
            c.age_seconds >= 1.5 && c.age_seconds < 60.0,
            "{}",
            c.age_seconds
        );
        assert_eq!(c.retransmits, 0);
        let text = render_text(&all);
        assert!(text.contains("SYN_RECV"), "{text}");
        assert!(text.contains("198.18.1.77:200"));

        let (limited, _) = query(
            &path,
            &StatusRequest {
                state: Some("syn_recv".into()),
                limit: 1,
            },
        )
        .unwrap();
        assert_eq!(limited.connections.len(), 1);
        assert!(limited.truncated);
        let (none, _) = query(
            &path,
            &StatusRequest {
                state: Some("established".into()),
                limit: 10,
            },
        )
        .unwrap();
        assert!(none.connections.is_empty());
        let bad = query(
            &path,
            &StatusRequest {
                state: Some("listen".into()),
                limit: 10,
            },
        )
        .unwrap_err();
        assert!(bad.to_string().contains("unknown state `listen`"), "{bad}");

        drop(server);
        assert!(!path.exists(), "socket removed on shutdown");
        let gone = query(
            &path,
            &StatusRequest {
                state: None,
                limit: 1,
            },
        )
        .unwrap_err();
        assert!(matches!(gone, crate::control::ControlError::Connect { .. }));
    }
}
