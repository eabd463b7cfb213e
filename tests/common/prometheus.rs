//! Prometheus from the test side: parsing the text exposition into normalized series
//! keys and [`Metrics`] snapshots, a minimal HTTP GET (for /metrics and Prometheus'
//! HTTP API), the list of metric families synguard exports (which src/, the dashboard,
//! the alert rules and a live scrape must agree with), PromQL name extraction, and
//! running promtool. It never starts a Prometheus server (tests/lab_prometheus.rs
//! does), and a missing promtool is a failure naming its package, never a skip.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;
// ---------------------------------------------------------------------------------
// Prometheus text.

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}` (labels sorted, spaces dropped).
pub fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let Some(open) = key.find('{') else {
        return key.to_owned();
    };
    let name = key[..open].trim();
    let body = key[open + 1..].trim_end().trim_end_matches('}');
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut lname = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            if !c.is_whitespace() {
                lname.push(c);
            }
        }
        if lname.is_empty() {
            break;
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut esc = false;
            for c in chars.by_ref() {
                if esc {
                    value.push('\\');
                    value.push(c);
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    break;
                } else {
                    value.push(c);
                }
            }
        }
        labels.push((lname, value));
    }
    if labels.is_empty() {
        return name.to_owned();
    }
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parses Prometheus text exposition into `normalized key -> value`.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = match line.find('{') {
            Some(open) if !line[..open].contains(char::is_whitespace) => {
                // find the closing brace outside quotes
                let bytes = line.as_bytes();
                let (mut i, mut inq, mut esc) = (open + 1, false, false);
                while i < bytes.len() {
                    let c = bytes[i];
                    if esc {
                        esc = false;
                    } else if c == b'\\' {
                        esc = true;
                    } else if c == b'"' {
                        inq = !inq;
                    } else if c == b'}' && !inq {
                        break;
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    continue;
                }
                (&line[..=i], &line[i + 1..])
            }
            _ => match line.split_once(char::is_whitespace) {
                Some((k, r)) => (k, r),
                None => continue,
            },
        };
        let Some(v) = rest.split_whitespace().next() else {
            continue;
        };
        let v = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => match v.parse::<f64>() {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        out.insert(normalize_key(key), v);
    }
    out
}

/// Value of one series, e.g. `metric(&text, "synguard_drops_total{reason=\"x\"}")`.
pub fn metric(text: &str, key: &str) -> Option<f64> {
    parse_metrics(text).get(&normalize_key(key)).copied()
}

/// Parsed metrics snapshot.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub map: BTreeMap<String, f64>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics {
            map: parse_metrics(text),
            text: text.to_owned(),
        }
    }

    /// The series `key` if present.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.map.get(&normalize_key(key)).copied()
    }

    /// The series `key`; panics (listing the synguard_ series present) if absent.
    pub fn val(&self, key: &str) -> f64 {
        self.get(key).unwrap_or_else(|| {
            let names: Vec<&String> = self.map.keys().collect();
            panic!("metric {key} missing from /metrics; present: {names:?}")
        })
    }

    /// Sum of every series of metric family `name` (all label sets); 0 if none.
    pub fn sum(&self, name: &str) -> f64 {
        self.map
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| *v)
            .sum()
    }

    /// Whether any series of family `name` exists.
    pub fn has_family(&self, name: &str) -> bool {
        self.map
            .keys()
            .any(|k| k.as_str() == name || k.starts_with(&format!("{name}{{")))
    }
}

/// Minimal HTTP/1.0 GET (handles Content-Length, chunked and close-delimited bodies).
/// Runs in the calling thread's namespace.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr}: no HTTP header end in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1).is_none_or(|c| c != "200") {
        return Err(format!("{addr}{path}: {status}"));
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_str = String::from_utf8_lossy(&rest[..eol]).to_string();
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("bad chunk size {size_str:?}: {e}"))?;
            if size == 0 || rest.len() < eol + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[(eol + 4 + size).min(rest.len())..];
        }
        out
    } else {
        body.to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}
/// One exported metric family: name and Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportedFamily {
    pub name: &'static str,
    /// "counter", "gauge" or "histogram" (as in `# TYPE`).
    pub kind: &'static str,
}

const fn fam(name: &'static str, kind: &'static str) -> ExportedFamily {
    ExportedFamily { name, kind }
}

/// Every metric family synguard exports (src/metrics, README "## Metrics"). The
/// dashboard and alert rules may reference only these (plus Prometheus' own `up`).
pub const EXPORTED_FAMILIES: &[ExportedFamily] = &[
    fam("synguard_frames_total", "counter"),
    fam("synguard_kernel_drops_total", "counter"),
    fam("synguard_bridged_frames_total", "counter"),
    fam("synguard_translated_frames_total", "counter"),
    fam("synguard_syn_received_total", "counter"),
    fam("synguard_synack_sent_total", "counter"),
    fam("synguard_syn_queue_completed_total", "counter"),
    fam("synguard_syn_queue_expired_total", "counter"),
    fam("synguard_syn_recv", "gauge"),
    fam("synguard_syn_recv_limit", "gauge"),
    fam("synguard_cookie_mode_active", "gauge"),
    fam("synguard_flows_expired_total", "counter"),
    fam("synguard_flows_evicted_total", "counter"),
    fam("synguard_cookies_validated_total", "counter"),
    fam("synguard_cookies_failed_total", "counter"),
    fam("synguard_backend_handshakes_total", "counter"),
    fam("synguard_backend_syn_retransmits_total", "counter"),
    fam("synguard_backends_down", "gauge"),
    fam("synguard_backend_down_syns_total", "counter"),
    fam("synguard_flows_adopted_total", "counter"),
    fam("synguard_rst_sent_total", "counter"),
    fam("synguard_challenge_acks_sent_total", "counter"),
    fam("synguard_signed_syns_total", "counter"),
    fam("synguard_icmp_errors_translated_total", "counter"),
    fam("synguard_backend_option_mismatch_total", "counter"),
    fam("synguard_xdp_mode", "gauge"),
    fam("synguard_xdp_forwarded_frames_total", "counter"),
    fam("synguard_xdp_bridged_frames_total", "counter"),
    fam("synguard_xdp_events_total", "counter"),
    fam("synguard_frames_to_engine_total", "counter"),
    fam("synguard_drops_total", "counter"),
    fam("synguard_flows", "gauge"),
    fam("synguard_flows_limit", "gauge"),
    fam("synguard_held_bytes", "gauge"),
    fam("synguard_build_info", "gauge"),
    fam("synguard_backend_handshake_duration_seconds", "histogram"),
];

/// Families of [`EXPORTED_FAMILIES`] that src/metrics does not export yet. A check
/// that looks for them in the source or in a live scrape prints a NOTE instead of
/// failing; each leaves this list as soon as src/ exports it. Empty: every such check
/// is strict.
pub const PENDING_FAMILIES: &[&str] = &[];

/// Whether `name` (as written in PromQL, so `_bucket`/`_sum`/`_count` of a
/// histogram included) is an exported series name.
pub fn is_exported_series(name: &str) -> bool {
    EXPORTED_FAMILIES.iter().any(|f| {
        f.name == name
            || (f.kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.name)))
    })
}

/// Every `synguard_*` identifier in a PromQL expression (or any text), in order,
/// without duplicates. Identifiers inside quoted strings count too: a label value
/// that looks like a metric name is suspicious in this project.
pub fn synguard_names_in(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let b = expr.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while let Some(pos) = expr[i..].find("synguard_") {
        let start = i + pos;
        if start > 0 && is_ident(b[start - 1]) {
            i = start + 1;
            continue;
        }
        let mut end = start;
        while end < b.len() && is_ident(b[end]) {
            end += 1;
        }
        let name = expr[start..end].to_owned();
        if !out.contains(&name) {
            out.push(name);
        }
        i = end;
    }
    out
}

/// `# TYPE` lines of a Prometheus text exposition: family name -> type.
pub fn exposition_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// Path of a promtool binary; panics naming the tool and its package when missing
/// (never a skip).
pub fn promtool_path() -> String {
    require_prometheus_tools(&["promtool"]);
    "promtool".to_owned()
}

/// Panics naming every missing tool of the Debian `prometheus` package.
pub fn require_prometheus_tools(tools: &[&str]) {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(PathBuf::from("/usr/bin"));
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !dirs.iter().any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing tool(s): {} (Debian package `prometheus`: apt-get install prometheus; \
         tests/run-all.sh installs it)",
        missing.join(", ")
    );
}

/// Runs `promtool ARGS` (stdin from `input` if given); returns (success, stdout+stderr).
pub fn promtool(args: &[&str], input: Option<&str>) -> (bool, String) {
    let bin = promtool_path();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (package `prometheus`): {e}"));
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("promtool stdin");
        let text = text.to_owned();
        // A writer thread: promtool may answer before reading everything.
        let w = thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
        let out = child.wait_with_output().expect("wait promtool");
        let _ = w.join();
        return (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let out = child.wait_with_output().expect("wait promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
/// Percent-encodes a URL query component (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
