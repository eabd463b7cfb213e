//! The collector: metric families built from `engine::Counters` on each
//! scrape. Names follow design.md section 7 (prefix `synguard_`, counters
//! end in `_total`, no per-address labels).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::engine::{Counters, DropReason, Port, TcpState};

type Labels<'a> = &'a [(&'a str, &'a str)];
/// Samples of one family: (labels, value).
type Samples<'a> = Vec<(Vec<(&'a str, &'a str)>, f64)>;

/// (name, help, type, label names) of every family exported.
const FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    (
        "synguard_frames_total",
        "Frames received (rx) and sent (tx) per gateway port.",
        MetricType::COUNTER,
        &["port", "direction"],
    ),
    (
        "synguard_bridged_frames_total",
        "Frames passed through unchanged (not TCP to a protected service).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "synguard_translated_frames_total",
        "Segments of proxied connections translated and forwarded.",
        MetricType::COUNTER,
        &[],
    ),
    (
        "synguard_syn_received_total",
        "SYNs received for protected services.",
        MetricType::COUNTER,
        &[],
    ),
    (
        "synguard_synack_sent_total",
        "SYN-ACKs sent to clients, by kind.",
        MetricType::COUNTER,
        &["kind"],
    ),
    (
        "synguard_cookies_validated_total",
        "ACKs whose SYN cookie validated (kernel: SyncookiesRecv).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "synguard_cookies_failed_total",
        "ACKs for no flow whose SYN cookie failed (kernel: SyncookiesFailed).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "synguard_backend_handshakes_total",
        "Backend handshakes by result (started, completed, failed).",
        MetricType::COUNTER,
        &["result"],
    ),
    (
        "synguard_backend_syn_retransmits_total",
        "Backend SYNs retransmitted.",
        MetricType::COUNTER,
        &[],
    ),
    (
        "synguard_rst_sent_total",
        "RSTs originated by the gateway.",
        MetricType::COUNTER,
        &[],
    ),
    (
        "synguard_drops_total",
        "Frames dropped, by reason.",
        MetricType::COUNTER,
        &["reason"],
    ),
    (
        "synguard_flows",
        "Tracked proxied connections, by TCP state.",
        MetricType::GAUGE,
        &["state"],
    ),
    (
        "synguard_held_bytes",
        "Early client bytes held while backend handshakes run.",
        MetricType::GAUGE,
        &[],
    ),
    (
        "synguard_build_info",
        "Build information; always 1.",
        MetricType::GAUGE,
        &["version"],
    ),
];

pub struct EngineCollector {
    counters: Arc<Counters>,
    descs: Vec<Desc>,
}

impl EngineCollector {
    pub fn new(counters: Arc<Counters>) -> EngineCollector {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels.iter().map(|l| l.to_string()).collect(),
                    Default::default(),
                )
                .expect("static metric descriptors are valid")
            })
            .collect();
        EngineCollector { counters, descs }
    }
}

fn metric(labels: Labels, value: f64, kind: MetricType) -> Metric {
    let mut m = Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(n, v)| {
                let mut p = LabelPair::default();
                p.set_name(n.to_string());
                p.set_value(v.to_string());
                p
            })
            .collect(),
    );
    if kind == MetricType::COUNTER {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    m
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let c = &self.counters;
        let u = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        let samples: Vec<Samples> = vec![
            [Port::Client, Port::Server]
                .iter()
                .flat_map(|p| {
                    [
                        (
                            vec![("port", p.as_str()), ("direction", "rx")],
                            u(&c.frames_rx[p.index()]),
                        ),
                        (
                            vec![("port", p.as_str()), ("direction", "tx")],
                            u(&c.frames_tx[p.index()]),
                        ),
                    ]
                })
                .collect(),
            vec![(vec![], u(&c.bridged))],
            vec![(vec![], u(&c.translated))],
            vec![(vec![], u(&c.syn_received))],
            vec![(vec![("kind", "cookie")], u(&c.synack_cookie))],
            vec![(vec![], u(&c.cookies_validated))],
            vec![(vec![], u(&c.cookies_failed))],
            vec![
                (vec![("result", "started")], u(&c.backend_started)),
                (vec![("result", "completed")], u(&c.backend_completed)),
                (vec![("result", "failed")], u(&c.backend_failed)),
            ],
            vec![(vec![], u(&c.backend_syn_retransmits))],
            vec![(vec![], u(&c.rst_sent))],
            DropReason::ALL
                .iter()
                .map(|r| (vec![("reason", r.as_str())], c.dropped(*r) as f64))
                .collect(),
            TcpState::ALL
                .iter()
                .filter(|s| **s != TcpState::Closed)
                .map(|s| (vec![("state", s.as_str())], c.flows_in(*s) as f64))
                .collect(),
            vec![(vec![], c.held_bytes.load(Ordering::Relaxed) as f64)],
            vec![(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        ];
        FAMILIES
            .iter()
            .zip(samples)
            .map(|((name, help, kind, _), samples)| {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(*kind);
                f.set_metric(
                    samples
                        .iter()
                        .map(|(labels, v)| metric(labels, *v, *kind))
                        .collect(),
                );
                f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::counters::bump;

    #[test]
    fn exposes_counter_values_with_labels() {
        let counters = Arc::new(Counters::default());
        bump(&counters.syn_received);
        bump(&counters.syn_received);
        counters.count_drop(DropReason::Fragment);
        bump(&counters.frames_rx[Port::Server.index()]);
        let text = crate::metrics::render(&crate::metrics::registry(counters));
        assert!(text.contains("synguard_syn_received_total 2\n"), "{text}");
        assert!(text.contains("synguard_drops_total{reason=\"fragment\"} 1\n"));
        assert!(text.contains("synguard_drops_total{reason=\"no_flow\"} 0\n"));
        assert!(text.contains("synguard_frames_total{port=\"server\",direction=\"rx\"} 1\n"));
        assert!(text.contains("# TYPE synguard_flows gauge"));
        assert!(text.contains("synguard_flows{state=\"time_wait\"} 0\n"));
    }
}
