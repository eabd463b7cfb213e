//! The shared harness of the integration tests. A test binary that needs it declares
//! `mod common;` and `use common::*;`, and gets every public item of the submodules
//! below through the re-exports here:
//!
//! - `lab`: the three-namespace topology ([`Lab`]), its fixed addressing, the
//!   cross-process lab lock, nft and nstat counters, ping, and the cleanup in `Drop`;
//! - `gateway`: starting, watching and stopping synguard (or the bridge stand-in) in
//!   the gateway namespace, `synguard status`, scraping its /metrics;
//! - `peer`: the test protocol's stream and hash, the in-process test server, the
//!   clients, latency statistics;
//! - `fleet`: N gateways between two ECMP routers ([`Fleet`], deploy/lab/ecmp.sh);
//! - `capture`: tcpdump in a lab namespace and parsing its output;
//! - `attacks`: bounded hping3 floods, `deploy/lab/attack.sh` runs and their reports;
//! - `prometheus`: the text exposition, a minimal HTTP GET, the exported metric
//!   families, promtool;
//! - `json`: a minimal JSON reader (dashboard, Prometheus API);
//! - `netns`: running closures inside a network namespace;
//! - `commands`: running external programs, preconditions, child processes.
//!
//! This file holds no harness code of its own, only the module map. No test binary
//! uses all of the harness, so dead code is allowed for the whole tree.
//!
//! Environment:
//! - `SYNGUARD_LAB_STANDIN=bridge`: `Lab::start_gateway` builds a Linux bridge `br0`
//!   over gwc/gws instead of starting synguard (harness self-test; metrics unavailable).
//! - `SYNGUARD_LAB_KEEP_LOGS=1`: keep the lab directory (gateway log) even on success.

#![allow(dead_code)]

mod attacks;
mod capture;
mod commands;
mod fleet;
mod gateway;
mod json;
mod lab;
mod netns;
mod peer;
mod prometheus;

// Each test binary uses a subset of the harness: an unused re-export is expected.
#[allow(unused_imports)]
pub use self::{
    attacks::*, capture::*, commands::*, fleet::*, gateway::*, json::*, lab::*, netns::*, peer::*,
    prometheus::*,
};
