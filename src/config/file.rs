//! The on-disk TOML shape: serde structs mirroring config/synguard.toml, all
//! keys optional, unknown keys rejected. Turns parse failures into errors that
//! name `section.key`. Never checks ranges or applies defaults (validate does).

use serde::Deserialize;

use super::ConfigError;

/// The whole file. Missing sections are empty sections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileConfig {
    pub interfaces: Interfaces,
    pub protect: Protect,
    pub cookies: Cookies,
    pub handshake: Handshake,
    pub syn_queue: SynQueue,
    pub limits: Limits,
    pub invalid_ack: InvalidAck,
    pub timeouts: Timeouts,
    pub metrics: Metrics,
    pub control: Control,
    pub state: State,
    pub io: Io,
    pub log: Log,
}

// Integers are read as i64 (TOML's own integer type) so that a negative or
// huge value reaches validate and gets the same "out of range" message as any
// other bad number, instead of serde's "expected u8".

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Interfaces {
    pub client: Option<String>,
    pub server: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Protect {
    /// Kept as strings so a bad entry is reported with its index and text.
    pub services: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cookies {
    pub secret_file: Option<String>,
    pub slot_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Handshake {
    pub synack_mss_v4: Option<i64>,
    pub synack_mss_v6: Option<i64>,
    pub synack_window: Option<i64>,
    pub synack_wscale: Option<i64>,
    pub backend_syn_timeout_ms: Option<i64>,
    pub backend_syn_retries: Option<i64>,
    pub backend_down_after: Option<i64>,
    pub signed_segments: Option<SignedName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SignedName {
    Bridge,
    Drop,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SynQueue {
    /// Kept as a string so validate can say which spellings are accepted
    /// (serde's enum error would name a Rust type).
    pub syncookies: Option<String>,
    pub backlog: Option<i64>,
    pub per_source_backlog: Option<i64>,
    pub synack_retries: Option<i64>,
    pub synack_timeout_ms: Option<i64>,
    pub cookie_hold_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    pub max_flows: Option<i64>,
    pub held_bytes_per_flow: Option<i64>,
    pub held_bytes_total: Option<i64>,
    pub challenge_ack_per_second: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ActionName {
    Rst,
    Drop,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvalidAck {
    pub action: Option<ActionName>,
    pub rst_per_second: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Timeouts {
    pub established_idle_seconds: Option<i64>,
    pub fin_wait_seconds: Option<i64>,
    pub close_wait_seconds: Option<i64>,
    pub last_ack_seconds: Option<i64>,
    pub msl_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Control {
    pub socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    pub flow_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Io {
    pub rcvbuf_bytes: Option<i64>,
    pub disable_offloads: Option<bool>,
    pub xdp: Option<String>,
    pub xdp_pin_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Log {
    pub level: Option<String>,
}

/// Parse TOML text into the file shape. `origin` names the source in syntax
/// errors (the file path).
pub(crate) fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
    match toml::Value::Table(table.clone()).try_into::<FileConfig>() {
        Ok(file) => Ok(file),
        // serde's error from a whole-document deserialize does not say which
        // key failed; find it by retrying one key at a time.
        Err(whole) => Err(locate(&table)
            .unwrap_or_else(|| ConfigError::invalid(origin, whole.message().to_string()))),
    }
}

fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let location = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{origin}:{line}:{column}")
        }
        None => origin.to_string(),
    };
    ConfigError::Syntax {
        location,
        // Keep the report on one line: "error: <message>".
        message: e.message().trim().replace('\n', "; "),
    }
}

/// Find the first section or key that makes deserialization fail. Every field
/// is optional, so a document holding a single key deserializes exactly when
/// that key is known and well-typed.
fn locate(table: &toml::Table) -> Option<ConfigError> {
    for (section, value) in table {
        if let Err(e) = try_doc(section, toml::Value::Table(toml::Table::new())) {
            return Some(match split_unknown(e.message()) {
                Some((_, expected)) => ConfigError::UnknownSection {
                    section: section.clone(),
                    expected,
                },
                None => ConfigError::invalid(section.as_str(), e.message().to_string()),
            });
        }
        let Some(keys) = value.as_table() else {
            return Some(ConfigError::invalid(
                section.as_str(),
                format!("expected a table, found {}", value.type_str()),
            ));
        };
        for (key, v) in keys {
            let mut one = toml::Table::new();
            one.insert(key.clone(), v.clone());
            if let Err(e) = try_doc(section, toml::Value::Table(one)) {
                return Some(match split_unknown(e.message()) {
                    Some((_, expected)) => ConfigError::UnknownKey {
                        section: section.clone(),
                        key: key.clone(),
                        expected,
                    },
                    None => {
                        ConfigError::invalid(format!("{section}.{key}"), e.message().to_string())
                    }
                });
            }
        }
    }
    None
}

fn try_doc(section: &str, value: toml::Value) -> Result<FileConfig, toml::de::Error> {
    let mut doc = toml::Table::new();
    doc.insert(section.to_string(), value);
    toml::Value::Table(doc).try_into::<FileConfig>()
}

/// serde's unknown-field message is "unknown field `x`, expected ..." (or
/// "..., there are no fields"); split off the name and the expectation.
fn split_unknown(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, tail) = rest.split_once("`, ")?;
    Some((name.to_string(), tail.trim().to_string()))
}
