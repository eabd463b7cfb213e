//! The flow file (`state.flow_file`): where a gracefully stopping gateway
//! leaves its flows for the next start on the same interfaces. Owns the
//! file's format (versioned JSON) and its handling: written whole to a
//! temporary file, synced and renamed into place, so a reader sees an old
//! file or a complete new one; read once at start and removed, so a later
//! crash never brings back flows that ended since. Never decides which
//! flows to keep (the engine's import does).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Flow, FlowKey};

/// `format` of the file: anything else is not a flow file.
const FORMAT: &str = "synguard-flows";
/// Bumped when `Flow` or the file's clocks change: a file of another
/// version is set aside, not guessed at. Version 1 (times on the wall
/// clock, as the engine's clock then was) is still read.
pub const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    format: String,
    version: u32,
    /// The engine clock when written: the clock of every time in `flows`
    /// (version 1: the wall clock).
    written_ms: u64,
    /// Version 2: the wall clock when written, and the boot the engine
    /// clock counted from (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_wall_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    client_iface: String,
    server_iface: String,
    flows: Vec<Record>,
}

/// The clocks a flow file's times are written and read against: the
/// engine's (CLOCK_MONOTONIC ms, src/io/clock.rs), which counts from boot,
/// the wall clock, and which boot that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clocks {
    pub engine_ms: u64,
    pub wall_ms: u64,
    /// `None` where the kernel does not say.
    pub boot_id: Option<String>,
}

impl Clocks {
    /// This machine's clocks now.
    pub fn now() -> Clocks {
        Clocks {
            engine_ms: crate::io::clock::engine_clock_ms(),
            wall_ms: crate::io::clock::wall_clock_ms(),
            boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }

    /// What to add to a time written on the engine clock of a file written
    /// at `written_ms` (engine clock; version 1: wall clock) and
    /// `written_wall_ms`, in `boot_id`, to put it on this engine clock.
    /// The same boot's monotonic clock is this one (no shift, whatever the
    /// wall clock did meanwhile); another boot's, or a version 1 file's
    /// wall-clock times, are placed by the wall-clock time that passed
    /// since the write (a wall clock stepped meanwhile moves them by as
    /// much; never into the future).
    fn shift_from(&self, written_ms: u64, written_wall_ms: u64, boot_id: Option<&str>) -> i64 {
        if boot_id.is_some() && boot_id == self.boot_id.as_deref() {
            return 0;
        }
        let elapsed = self.wall_ms.saturating_sub(written_wall_ms);
        self.engine_ms as i64 - elapsed as i64 - written_ms as i64
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    key: FlowKey,
    flow: Flow,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a synguard flow file of version {VERSION}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path}: written for interfaces {client}/{server}, this gateway runs on {want_client}/{want_server}"
    )]
    OtherInterfaces {
        path: PathBuf,
        client: String,
        server: String,
        want_client: String,
        want_server: String,
    },
}

/// What [`take`] found.
#[derive(Debug)]
pub struct Loaded {
    /// With their times on the reader's engine clock.
    pub flows: Vec<(FlowKey, Flow)>,
    /// How long ago the file was written, by the wall clock (ms).
    pub written_ago_ms: u64,
    /// Why the file could not be removed after reading, if it could not:
    /// the flows are still good, but the next start would read them again.
    pub not_removed: Option<io::Error>,
}

/// Can a flow file be written at `path`? Creates and removes `PATH.tmp`,
/// the file [`save`] writes first, so a start or a reload learns of a path
/// it cannot write before a stop does.
pub fn check_writable(path: &Path) -> Result<(), FlowFileError> {
    let tmp = tmp_path(path);
    File::create(&tmp)
        .and_then(|_| fs::remove_file(&tmp))
        .map_err(|source| FlowFileError::Io { path: tmp, source })
}

/// Write `flows` for the next start on these interfaces; returns how many.
/// The temporary file is `PATH.tmp` in the same directory (same file
/// system, so the rename is atomic); it is removed when writing fails.
pub fn save(
    path: &Path,
    client_iface: &str,
    server_iface: &str,
    now: &Clocks,
    flows: Vec<(FlowKey, Flow)>,
) -> Result<usize, FlowFileError> {
    let n = flows.len();
    let body = Body {
        format: FORMAT.to_string(),
        version: VERSION,
        written_ms: now.engine_ms,
        written_wall_ms: Some(now.wall_ms),
        boot_id: now.boot_id.clone(),
        client_iface: client_iface.to_string(),
        server_iface: server_iface.to_string(),
        flows: flows
            .into_iter()
            .map(|(key, flow)| Record { key, flow })
            .collect(),
    };
    let tmp = tmp_path(path);
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| FlowFileError::Io { path: p, source }
    };
    let write = || -> io::Result<()> {
        let file = File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        serde_json::to_writer(&mut w, &body).map_err(io::Error::other)?;
        w.flush()?;
        w.get_ref().sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(n)
}

/// Read the flow file left by the previous run and remove it. `Ok(None)`:
/// there is none. A file that is not a flow file of this version is renamed
/// to `PATH.rejected`, kept for inspection, and reported as the error. A
/// file written for other interfaces is left where it is (it is another
/// instance's: two instances must not share the path), and so is a path
/// that cannot be read (a directory, no permission): both are reported.
/// The flows' times are put on the engine clock of `now`
/// ([`Clocks::shift_from`]).
pub fn take(
    path: &Path,
    client_iface: &str,
    server_iface: &str,
    now: &Clocks,
) -> Result<Option<Loaded>, FlowFileError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FlowFileError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match read(path, file, client_iface, server_iface, now) {
        Ok(mut loaded) => {
            loaded.not_removed = fs::remove_file(path).err();
            Ok(Some(loaded))
        }
        Err(e @ FlowFileError::Invalid { .. }) => match fs::rename(path, rejected_path(path)) {
            Ok(()) => Err(e),
            Err(source) => Err(FlowFileError::Io {
                path: path.to_path_buf(),
                source,
            }),
        },
        Err(e) => Err(e),
    }
}

/// Just the header, to tell a flow file of another version from a broken one
/// before the flows are parsed (serde skips the other fields).
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u64>,
}

fn read(
    path: &Path,
    mut file: File,
    client_iface: &str,
    server_iface: &str,
    now: &Clocks,
) -> Result<Loaded, FlowFileError> {
    let invalid = |reason: String| FlowFileError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    // Whole, then parsed from the slice: serde_json reads a slice many times
    // faster than an io::Read.
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| FlowFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON ({e})")))?;
    let (format, version) = (header.format.as_deref(), header.version);
    if format != Some(FORMAT) || !matches!(version, Some(1) | Some(2)) {
        return Err(invalid(format!("format {format:?}, version {version:?}")));
    }
    let body: Body = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let written_wall_ms = match (body.version, body.written_wall_ms) {
        (1, None) => body.written_ms,
        (2, Some(wall)) => wall,
        _ => {
            return Err(invalid(
                "written_wall_ms is version 2's, and required there".into(),
            ))
        }
    };
    if body.client_iface != client_iface || body.server_iface != server_iface {
        return Err(FlowFileError::OtherInterfaces {
            path: path.to_path_buf(),
            client: body.client_iface,
            server: body.server_iface,
            want_client: client_iface.to_string(),
            want_server: server_iface.to_string(),
        });
    }
    let shift = now.shift_from(body.written_ms, written_wall_ms, body.boot_id.as_deref());
    Ok(Loaded {
        flows: body
            .flows
            .into_iter()
            .map(|mut r| {
                r.flow.shift_times(shift);
                (r.key, r.flow)
            })
            .collect(),
        written_ago_ms: now.wall_ms.saturating_sub(written_wall_ms),
        not_removed: None,
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn tmp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".tmp")
}

/// Where [`take`] puts a file it could not use.
pub fn rejected_path(path: &Path) -> PathBuf {
    with_suffix(path, ".rejected")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::flow::{L2Template, WindowRescale};
    use crate::engine::TcpState;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir()
                .join(format!("synguard-flow-file-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn file(&self) -> PathBuf {
            self.0.join("flows.json")
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const BOOT: &str = "2f0c1c5e-0f5a-4c8e-9a4e-3b3c1d7e9a01";

    /// The clocks of one boot `t` ms after it; the wall clock said
    /// 1_700_000_000_000 at boot.
    fn at(t: u64) -> Clocks {
        Clocks {
            engine_ms: t,
            wall_ms: 1_700_000_000_000 + t,
            boot_id: Some(BOOT.into()),
        }
    }

    fn flow(port: u16) -> (FlowKey, Flow) {
        let key = FlowKey {
            client: "198.18.0.1".parse().unwrap(),
            server: "198.18.0.2".parse().unwrap(),
            client_port: port,
            server_port: 8080,
        };
        let l2 = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        let flow = Flow {
            state: TcpState::Established,
            l2: L2Template::from_frame(&l2, 14),
            client_isn: 1,
            gateway_isn: 2,
            seq_delta: 3,
            gateway_tsval: 4,
            ts_offset: 5,
            timestamps: true,
            client_timestamps: true,
            client_sack: true,
            client_ecn: false,
            sack_declined: false,
            ecn_declined: false,
            gateway_last_tsval: 6,
            server_last_tsval: 7,
            server_last_window: 8,
            client_mss: 1460,
            server_syn: None,
            client_to_server_window: WindowRescale {
                from_shift: 7,
                to_shift: 9,
            },
            server_to_client_window: WindowRescale::default(),
            client_wscale: Some(7),
            client_last_tsval: 9,
            client_last_window: 10,
            server_isn: 11,
            client_next: 12,
            server_next: 13,
            client_window_max: 14,
            server_window_max: 15,
            client_fin_end: None,
            client_fin_pending: None,
            server_fin_end: Some(16),
            backend_syn: vec![1, 2, 3],
            backend_syn_sent: 1,
            held: vec![vec![4, 5]],
            held_bytes: 2,
            timer_at: 17,
            last_seen: 18,
            opened_ms: 19,
            last_challenge_ms: None,
        };
        (key, flow)
    }

    #[test]
    fn saved_flows_come_back_once_and_the_file_is_gone() {
        let dir = TempDir::new("round-trip");
        let flows = vec![flow(40000), flow(40001)];
        assert_eq!(
            save(&dir.file(), "gwc", "gws", &at(1234), flows.clone()).unwrap(),
            2
        );
        assert!(!tmp_path(&dir.file()).exists());
        let loaded = take(&dir.file(), "gwc", "gws", &at(5000)).unwrap().unwrap();
        assert_eq!(loaded.flows, flows);
        assert_eq!(loaded.written_ago_ms, 5000 - 1234);
        assert!(!dir.file().exists(), "read once");
        assert!(take(&dir.file(), "gwc", "gws", &at(5000))
            .unwrap()
            .is_none());
    }

    #[test]
    fn unusable_files_are_set_aside_with_the_reason() {
        let dir = TempDir::new("rejected");
        let path = dir.file();
        let cases: [(&str, &str); 4] = [
            ("{not json", "not JSON"),
            (
                r#"{"format":"other","version":1}"#,
                "format Some(\"other\")",
            ),
            (
                r#"{"format":"synguard-flows","version":99,"flows":[]}"#,
                "version Some(99)",
            ),
            (
                r#"{"format":"synguard-flows","version":1,"written_ms":1,"client_iface":"a","server_iface":"b","flows":[{"key":1}]}"#,
                "invalid type",
            ),
        ];
        for (text, reason) in cases {
            fs::write(&path, text).unwrap();
            let err = take(&path, "a", "b", &at(5000)).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(!path.exists(), "{text}");
            assert_eq!(fs::read_to_string(rejected_path(&path)).unwrap(), text);
        }
        fs::remove_file(rejected_path(&path)).unwrap();
        save(&path, "gwc", "gws", &at(1), vec![flow(1)]).unwrap();
        let err = take(&path, "eth1", "eth2", &at(5000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("written for interfaces gwc/gws, this gateway runs on eth1/eth2"),
            "{err}"
        );
        assert!(
            path.exists() && !rejected_path(&path).exists(),
            "another instance's file stays for it"
        );
        assert_eq!(
            take(&path, "gwc", "gws", &at(5000))
                .unwrap()
                .unwrap()
                .flows
                .len(),
            1
        );

        // A path that is not a readable file is never moved.
        fs::create_dir(&path).unwrap();
        let err = take(&path, "gwc", "gws", &at(5000)).unwrap_err();
        assert!(matches!(err, FlowFileError::Io { .. }), "{err}");
        assert!(path.is_dir() && !rejected_path(&path).exists());
    }

    #[test]
    fn a_write_that_fails_leaves_no_file() {
        let dir = TempDir::new("no-dir");
        let path = dir.0.join("missing-dir").join("flows.json");
        assert!(check_writable(&path).is_err());
        let err = save(&path, "a", "b", &at(1), vec![flow(1)]).unwrap_err();
        assert!(matches!(err, FlowFileError::Io { .. }), "{err}");
        assert!(!path.exists() && !tmp_path(&path).exists());
        check_writable(&dir.file()).unwrap();
        assert!(!tmp_path(&dir.file()).exists(), "the probe is removed");
    }

    /// A file written by version 1 of the format (tests/data/flows-v1.json,
    /// `flow(40000)` below) must keep loading: a change to `Flow` that
    /// breaks it needs a new VERSION and a way to read the old files, or an
    /// upgrade loses every connection.
    #[test]
    fn version_1_files_keep_loading() {
        let dir = TempDir::new("v1");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flows-v1.json");
        // Version 1's times were wall-clock ms, as its written_ms
        // (1_700_000_000_000): a deadline 120 s after the write, last seen
        // 10 s and born 100 s before it.
        let text = fs::read_to_string(&sample)
            .unwrap()
            .replace("\"timer_at\": 17", "\"timer_at\": 1700000120000")
            .replace("\"last_seen\": 18", "\"last_seen\": 1699999990000")
            .replace("\"opened_ms\": 19", "\"opened_ms\": 1699999900000");
        fs::write(dir.file(), text).unwrap();
        // Read 60 s later by a gateway whose engine clock reads 10_000_000:
        // the times keep their distance to the wall-clock now.
        let now = Clocks {
            engine_ms: 10_000_000,
            wall_ms: 1_700_000_060_000,
            boot_id: Some(BOOT.into()),
        };
        let loaded = take(&dir.file(), "gwc", "gws", &now).unwrap().unwrap();
        let (key, mut want) = flow(40000);
        (want.timer_at, want.last_seen, want.opened_ms) = (10_060_000, 9_930_000, 9_840_000);
        assert_eq!(loaded.flows, vec![(key, want)]);
        assert_eq!(loaded.written_ago_ms, 60_000);
    }

    /// Times are on the engine clock, CLOCK_MONOTONIC: the same boot's is
    /// this one whatever the wall clock did; another boot's is placed by
    /// the wall-clock time that passed.
    #[test]
    fn times_come_back_on_this_boots_engine_clock() {
        let dir = TempDir::new("clocks");
        save(&dir.file(), "gwc", "gws", &at(1_000_000), vec![flow(1)]).unwrap();
        // Same boot, 30 s later, the wall clock stepped back an hour.
        let mut later = at(1_030_000);
        later.wall_ms -= 3_600_000;
        let loaded = take(&dir.file(), "gwc", "gws", &later).unwrap().unwrap();
        assert_eq!(loaded.flows, vec![flow(1)]);
        // Another boot, up 100 s, the file written 50 s ago by the wall
        // clock; its flow due 120 s after the write, last seen 10 s and
        // born 200 s before it (before this boot: the clock's start).
        let (key, mut f) = flow(1);
        (f.timer_at, f.last_seen, f.opened_ms) = (1_120_000, 990_000, 800_000);
        save(
            &dir.file(),
            "gwc",
            "gws",
            &at(1_000_000),
            vec![(key, f.clone())],
        )
        .unwrap();
        let rebooted = Clocks {
            engine_ms: 100_000,
            wall_ms: 1_700_001_050_000,
            boot_id: Some("another".into()),
        };
        let loaded = take(&dir.file(), "gwc", "gws", &rebooted).unwrap().unwrap();
        (f.timer_at, f.last_seen, f.opened_ms) = (170_000, 40_000, 0);
        assert_eq!(loaded.flows, vec![(key, f)]);
        assert_eq!(loaded.written_ago_ms, 50_000);
    }

    #[test]
    fn unknown_fields_are_rejected_not_dropped() {
        // A file from a newer synguard whose flows carry a field this one
        // does not know: set aside, never imported without it.
        let dir = TempDir::new("unknown");
        save(&dir.file(), "gwc", "gws", &at(1), vec![flow(1)]).unwrap();
        let text = fs::read_to_string(dir.file()).unwrap();
        fs::write(
            dir.file(),
            text.replacen("\"state\"", "\"new_field\":1,\"state\"", 1),
        )
        .unwrap();
        let err = take(&dir.file(), "gwc", "gws", &at(5000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("new_field"), "{err}");
    }
}
