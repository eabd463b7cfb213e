//! The `synguard status` side: send a request to the control socket, and
//! render the reply as a table like `ss` (or leave it JSON for scripts).

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Reply, StatusReply, StatusRequest};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the synguard control socket {path}: {source} (is synguard running? set --control-socket)")]
    Connect { path: PathBuf, source: io::Error },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control socket {path}: unreadable reply: {message}")]
    BadReply { path: PathBuf, message: String },
    #[error("synguard refused the request: {0}")]
    Refused(String),
}

/// Ask the gateway behind `path`; returns the reply and its raw JSON line.
pub fn query(path: &Path, req: &StatusRequest) -> Result<(StatusReply, String), ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(|source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io_err)?;
    let mut line = serde_json::to_string(req).expect("a request always serializes");
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io_err)?;
    let mut raw = String::new();
    BufReader::new(&stream)
        .read_line(&mut raw)
        .map_err(io_err)?;
    match serde_json::from_str::<Reply>(&raw) {
        Ok(Reply::Status(s)) => Ok((s, raw.trim_end().to_string())),
        Ok(Reply::Error(m)) => Err(ControlError::Refused(m)),
        Err(e) => Err(ControlError::BadReply {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// `ss`-style text: a header line, counts by state, then the connections.
pub fn render_text(r: &StatusReply) -> String {
    let mut out = String::new();
    let half_open = r
        .counts
        .iter()
        .find(|c| c.state == "syn_recv")
        .map_or(0, |c| c.count);
    let flows: i64 = r
        .counts
        .iter()
        .filter(|c| c.state != "syn_recv")
        .map(|c| c.count)
        .sum();
    let _ = writeln!(
        out,
        "synguard {}: {} half-open of {}, {} flows of {}, syncookies {} (cookie mode {})",
        r.version,
        half_open,
        r.syn_recv_limit,
        flows,
        r.flows_limit,
        r.syncookies,
        if r.cookie_mode_active {
            "active"
        } else {
            "inactive"
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<18} {:>10}", "STATE", "COUNT");
    for c in &r.counts {
        let _ = writeln!(out, "{:<18} {:>10}", c.state.to_uppercase(), c.count);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:<46} {:<46} {:>9} {:>9} {:>7}",
        "STATE", "CLIENT", "SERVER", "AGE", "IDLE", "RETRANS"
    );
    for c in &r.connections {
        let _ = writeln!(
            out,
            "{:<18} {:<46} {:<46} {:>8.1}s {:>8.1}s {:>7}",
            c.state.to_uppercase(),
            c.client,
            c.server,
            c.age_seconds,
            c.idle_seconds,
            c.retransmits
        );
    }
    if r.truncated {
        let _ = writeln!(out, "... more connections match; raise --limit");
    }
    out
}
