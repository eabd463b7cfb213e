//! Prometheus exposition of the engine's counters: a collector that reads
//! the engine's atomics at scrape time (nothing per packet: no label lookups,
//! no locks on the data path) and a small HTTP endpoint (tiny_http) serving
//! /metrics. Never changes a counter.

mod collector;
mod http;

pub use collector::EngineCollector;
pub use http::{serve, MetricsServer};

use std::sync::Arc;

use prometheus::Registry;

use crate::engine::Counters;

/// A registry holding the engine collector.
pub fn registry(counters: Arc<Counters>) -> Registry {
    let registry = Registry::new();
    registry
        .register(Box::new(EngineCollector::new(counters)))
        .expect("metric descriptors are unique and valid");
    registry
}

/// Render the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding of gathered metrics cannot fail");
    String::from_utf8(out).expect("prometheus text format is UTF-8")
}
