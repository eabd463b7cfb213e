//! The control protocol's messages (serde, one JSON object per line).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    /// Only connections in this state (`syn_recv`, `established`,
    /// `close_wait`, ... as in `synguard_flows{state}`); all when absent.
    pub state: Option<String>,
    /// At most this many connections listed.
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub state: String,
    pub client: String,
    pub server: String,
    pub age_seconds: f64,
    pub idle_seconds: f64,
    pub retransmits: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    pub version: String,
    pub syncookies: String,
    pub cookie_mode_active: bool,
    pub syn_recv_limit: u64,
    pub flows_limit: u64,
    /// Per state, SYN_RECV first.
    pub counts: Vec<StateCount>,
    pub connections: Vec<Connection>,
    /// More connections matched than `limit`.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Status(StatusReply),
    Error(String),
}
