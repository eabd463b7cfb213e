//! The collector: metric families built from `engine::Counters` on each
//! scrape. Names follow design.md section 7 (prefix `synguard_`, counters
//! end in `_total`, no per-address labels). [`families`] is the one list of
//! what is exported; descriptors are derived from it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::engine::histogram::LatencyHistogram;
use crate::engine::program_events::ProgramEventResult;
use crate::engine::{Counters, DropReason, Port, SynOption, TcpState};

const PORTS: [Port; 2] = [Port::Client, Port::Server];

pub struct EngineCollector {
    counters: Arc<Counters>,
    descs: Vec<Desc>,
}

impl EngineCollector {
    pub fn new(counters: Arc<Counters>) -> EngineCollector {
        let descs = families(&Counters::default())
            .iter()
            .map(|f| {
                let labels = f.get_metric().first().map_or(vec![], |m| {
                    m.get_label()
                        .iter()
                        .map(|l| l.get_name().to_string())
                        .collect()
                });
                Desc::new(
                    f.get_name().to_string(),
                    f.get_help().to_string(),
                    labels,
                    Default::default(),
                )
                .expect("static metric descriptors are valid")
            })
            .collect();
        EngineCollector { counters, descs }
    }
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&self.counters)
    }
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// Builds one family; samples are (label pairs, value).
struct FamilyBuilder(MetricFamily);

impl FamilyBuilder {
    fn new(name: &str, help: &str, kind: MetricType) -> FamilyBuilder {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        FamilyBuilder(f)
    }

    fn sample(mut self, labels: &[(&str, &str)], value: f64) -> FamilyBuilder {
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
        if self.0.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.0.mut_metric().push(m);
        self
    }
}

fn counter(name: &str, help: &str) -> FamilyBuilder {
    FamilyBuilder::new(name, help, MetricType::COUNTER)
}

fn gauge(name: &str, help: &str) -> FamilyBuilder {
    FamilyBuilder::new(name, help, MetricType::GAUGE)
}

/// Everything exported, read from `c`.
pub fn families(c: &Counters) -> Vec<MetricFamily> {
    let mut frames = counter(
        "synguard_frames_total",
        "Frames received (rx) and sent (tx) per gateway port.",
    );
    let mut to_engine = counter(
        "synguard_frames_to_engine_total",
        "Of the frames received, those that reached the engine (userspace) through its sockets, per port; the rest the XDP programs handled.",
    );
    let mut kernel = counter(
        "synguard_kernel_drops_total",
        "Frames the kernel dropped before the gateway read them (socket receive buffer full), per port.",
    );
    for p in PORTS {
        frames = frames.sample(
            &[("port", p.as_str()), ("direction", "rx")],
            load(&c.frames_rx[p.index()]),
        );
        frames = frames.sample(
            &[("port", p.as_str()), ("direction", "tx")],
            load(&c.frames_tx[p.index()]),
        );
        to_engine = to_engine.sample(
            &[("port", p.as_str())],
            load(&c.frames_to_engine[p.index()]),
        );
        kernel = kernel.sample(&[("port", p.as_str())], load(&c.kernel_drops[p.index()]));
    }
    let mut drops = counter("synguard_drops_total", "Frames dropped, by reason.");
    for r in DropReason::ALL {
        drops = drops.sample(&[("reason", r.as_str())], c.dropped(r) as f64);
    }
    let mut mismatches = counter(
        "synguard_backend_option_mismatch_total",
        "Connections whose server declined a TCP option the client was promised in the SYN-ACK, by option; the gateway corrects these flows and stops offering the option for that service.",
    );
    for o in SynOption::ALL {
        mismatches = mismatches.sample(
            &[("option", o.as_str())],
            load(&c.option_mismatches[o.index()]),
        );
    }
    let mut flows = gauge(
        "synguard_flows",
        "Tracked proxied connections, by TCP state.",
    );
    for s in TcpState::ALL.into_iter().filter(|s| *s != TcpState::Closed) {
        flows = flows.sample(&[("state", s.as_str())], c.flows_in(s) as f64);
    }
    [
        frames,
        to_engine,
        kernel,
        counter(
            "synguard_bridged_frames_total",
            "Frames passed through unchanged (not TCP to a protected service).",
        )
        .sample(&[], load(&c.bridged)),
        counter(
            "synguard_translated_frames_total",
            "Segments of proxied connections translated and forwarded.",
        )
        .sample(&[], load(&c.translated)),
        counter(
            "synguard_syn_received_total",
            "SYNs received for protected services.",
        )
        .sample(&[], load(&c.syn_received)),
        counter("synguard_synack_sent_total", "SYN-ACKs sent to clients: queued (half-open entry), cookie (stateless), retransmit.")
            .sample(&[("kind", "queued")], load(&c.synack_queued))
            .sample(&[("kind", "cookie")], load(&c.synack_cookie))
            .sample(&[("kind", "retransmit")], load(&c.synack_retransmit)),
        counter("synguard_syn_queue_completed_total", "Handshakes completed through a half-open queue entry.")
            .sample(&[], load(&c.queue_completed)),
        counter("synguard_syn_queue_expired_total", "Half-open entries given up after the last SYN-ACK retransmission.")
            .sample(&[], load(&c.queue_expired)),
        gauge("synguard_syn_recv", "Half-open (SYN_RECV) entries in the queue.").sample(&[], c.half_open.load(Ordering::Relaxed) as f64),
        gauge("synguard_cookie_mode_active", "1 while SYNs are answered with stateless cookies (always mode, or auto mode after an overflow).")
            .sample(&[], load(&c.cookie_mode_active)),
        counter("synguard_flows_expired_total", "Flows removed after their state's idle timeout.").sample(&[], load(&c.flows_expired)),
        counter("synguard_flows_evicted_total", "TIME_WAIT flows evicted to make room in a full flow table.").sample(&[], load(&c.flows_evicted)),
        counter(
            "synguard_cookies_validated_total",
            "ACKs whose SYN cookie validated (kernel: SyncookiesRecv).",
        )
        .sample(&[], load(&c.cookies_validated)),
        counter(
            "synguard_cookies_failed_total",
            "ACKs for no flow whose SYN cookie failed (kernel: SyncookiesFailed).",
        )
        .sample(&[], load(&c.cookies_failed)),
        counter("synguard_backend_handshakes_total", "Backend handshakes by result (started, completed, refused by RST, timeout).")
            .sample(&[("result", "started")], load(&c.backend_started))
            .sample(&[("result", "completed")], load(&c.backend_completed))
            .sample(&[("result", "refused")], load(&c.backend_refused))
            .sample(&[("result", "timeout")], load(&c.backend_timeout)),
        gauge(
            "synguard_backends_down",
            "Protected services whose backend failed handshake.backend_down_after handshakes in a row: their SYNs are bridged to the server until it answers one.",
        )
        .sample(&[], c.backends_down.load(Ordering::Relaxed) as f64),
        counter(
            "synguard_flows_adopted_total",
            "Connections made while their service was not protected, taken over unproxied after a reload added it.",
        )
        .sample(&[], load(&c.flows_adopted)),
        counter(
            "synguard_backend_down_syns_total",
            "SYNs bridged to the server because its service's backend was down.",
        )
        .sample(&[], load(&c.backend_down_syns)),
        counter(
            "synguard_backend_syn_retransmits_total",
            "Backend SYNs retransmitted.",
        )
        .sample(&[], load(&c.backend_syn_retransmits)),
        counter("synguard_rst_sent_total", "RSTs originated by the gateway.")
            .sample(&[], load(&c.rst_sent)),
        counter("synguard_challenge_acks_sent_total", "RFC 5961 challenge ACKs sent for SYNs on open connections (kernel: TCPChallengeACK).")
            .sample(&[], load(&c.challenge_acks)),
        counter("synguard_signed_syns_total", "SYNs signed with TCP-MD5 or TCP-AO, never proxied (bridged or dropped per handshake.signed_segments).")
            .sample(&[], load(&c.signed_syns)),
        counter("synguard_icmp_errors_translated_total", "ICMP and ICMPv6 errors whose quoted segment of a proxied connection was translated.")
            .sample(&[], load(&c.icmp_translated)),
        mismatches,
        drops,
        flows,
        gauge(
            "synguard_held_bytes",
            "Early client bytes held while backend handshakes run.",
        )
        .sample(&[], c.held_bytes.load(Ordering::Relaxed) as f64),
        {
            let mode = c.xdp_mode.load(Ordering::Relaxed);
            gauge("synguard_xdp_mode", "XDP fast path on both ports: 1 for the active mode (off, generic or native).")
                .sample(&[("mode", "off")], f64::from(u8::from(mode == 0)))
                .sample(&[("mode", "generic")], f64::from(u8::from(mode == 1)))
                .sample(&[("mode", "native")], f64::from(u8::from(mode == 2)))
        },
        counter(
            "synguard_xdp_forwarded_frames_total",
            "Established-flow segments translated and redirected by the XDP programs, by the port they left on (also in synguard_translated_frames_total).",
        )
        .sample(&[("port", "client")], load(&c.xdp_forwarded[Port::Client.index()]))
        .sample(&[("port", "server")], load(&c.xdp_forwarded[Port::Server.index()])),
        counter(
            "synguard_xdp_bridged_frames_total",
            "Frames for no protected service the XDP programs redirected unchanged, by the port they left on (also in synguard_bridged_frames_total).",
        )
        .sample(&[("port", "client")], load(&c.xdp_bridged[Port::Client.index()]))
        .sample(&[("port", "server")], load(&c.xdp_bridged[Port::Server.index()])),
        ProgramEventResult::ALL.iter().fold(
            counter(
                "synguard_xdp_events_total",
                "Frames the XDP programs handled in the engine's place and reported to it, by what the engine's replay found: replayed (it agreed), refused (it would have done otherwise), ring_full (the report ring was full, so the program passed the frame up instead).",
            ),
            |m, r| m.sample(&[("result", r.as_str())], load(&c.xdp_events[r.index()])),
        ),
        gauge("synguard_build_info", "Build information; always 1.")
            .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0),
        gauge("synguard_syn_recv_limit", "Capacity of the half-open queue (syn_queue.backlog).")
            .sample(&[], load(&c.syn_recv_limit)),
        gauge("synguard_flows_limit", "Capacity of the flow table (limits.max_flows).").sample(&[], load(&c.flows_limit)),
        latency_histogram(
            "synguard_backend_handshake_duration_seconds",
            "Backend handshake time: first backend SYN sent to server SYN-ACK (1 ms resolution).",
            &c.backend_handshake_latency,
        ),
    ]
    .into_iter()
    .map(|b| b.0)
    .collect()
}

fn latency_histogram(name: &str, help: &str, h: &LatencyHistogram) -> FamilyBuilder {
    let (buckets, sum_ms, count) = h.snapshot();
    let mut proto = Histogram::default();
    proto.set_bucket(
        buckets
            .into_iter()
            .map(|(bound_ms, cumulative)| {
                let mut b = Bucket::default();
                b.set_upper_bound(bound_ms as f64 / 1000.0);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect(),
    );
    proto.set_sample_sum(sum_ms as f64 / 1000.0);
    proto.set_sample_count(count);
    let mut m = Metric::default();
    m.set_histogram(proto);
    let mut f = FamilyBuilder::new(name, help, MetricType::HISTOGRAM);
    f.0.mut_metric().push(m);
    f
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
        bump(&counters.kernel_drops[Port::Client.index()]);
        let text = crate::metrics::render(&crate::metrics::registry(counters.clone()));
        assert!(text.contains("synguard_syn_received_total 2\n"), "{text}");
        assert!(text.contains("synguard_drops_total{reason=\"fragment\"} 1\n"));
        assert!(text.contains("synguard_drops_total{reason=\"no_flow\"} 0\n"));
        assert!(text.contains("synguard_frames_total{port=\"server\",direction=\"rx\"} 1\n"));
        assert!(text.contains("synguard_kernel_drops_total{port=\"client\"} 1\n"));
        assert!(text.contains("# TYPE synguard_flows gauge"));
        assert!(text.contains("synguard_flows{state=\"time_wait\"} 0\n"));
        counters.backend_handshake_latency.record(3);
        let text = crate::metrics::render(&crate::metrics::registry(counters));
        assert!(
            text.contains("synguard_backend_handshake_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("synguard_backend_handshake_duration_seconds_bucket{le=\"0.002\"} 0\n")
        );
        assert!(text.contains("synguard_backend_handshake_duration_seconds_count 1\n"));
        assert!(text.contains("synguard_backend_handshake_duration_seconds_sum 0.003\n"));
    }

    #[test]
    fn every_family_has_a_descriptor() {
        let collector = EngineCollector::new(Arc::new(Counters::default()));
        let names: Vec<_> = collector.desc().iter().map(|d| d.fq_name.clone()).collect();
        let families = collector.collect();
        assert_eq!(names.len(), families.len());
        for f in &families {
            assert!(
                names.contains(&f.get_name().to_string()),
                "{}",
                f.get_name()
            );
        }
    }
}
