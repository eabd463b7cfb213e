// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * synguard XDP fast path: two programs sharing these maps, sg_fast_path on
 * the client port and sg_server_port on the server port.
 *
 * Twin of the Rust engine for these cases, byte for byte:
 *  - a SYN to a protected service while the engine answers SYNs statelessly
 *    becomes its cookie SYN-ACK in place (XDP_TX), exactly what
 *    Engine::on_client_syn + SynAck::write (src/engine/handshake.rs) build;
 *  - an ACK to a protected service for no tracked 4-tuple whose cookie is
 *    valid becomes its backend SYN in place and is redirected to the server
 *    port, exactly what Engine::on_handshake_ack builds; the server's
 *    SYN-ACK to it becomes the client's ACK, translated, and installs the
 *    flow in sg_flows, as Engine::complete_backend does; each frame as it
 *    arrived goes to the engine in sg_events, which replays it;
 *  - an ACK to a protected service for no tracked 4-tuple whose cookie is
 *    invalid is dropped, or answered with <SEQ=SEG.ACK><CTL=RST> (RFC 9293
 *    3.10.7.2) within the engine's rst_per_second token bucket;
 *  - a segment of an established flow the engine published in sg_flows is
 *    translated in place as src/engine/established.rs does (seq/ack, SACK
 *    blocks, TSval/TSecr, window rescaling, RFC 1624 checksum updates in
 *    the engine's order) and redirected to the other port (sg_tx_ports),
 *    both directions; the progress the engine tracks is recorded in the
 *    entry.
 * Everything else is XDP_PASS: the engine decides. In particular anything
 * not fully parsed (IPv4 options, IPv6 extension headers, fragments, more
 * than one VLAN tag, malformed TCP options, TCP-MD5 / TCP-AO, SYNs or ACKs
 * with payload, bad checksums) goes up unchanged, and so does every
 * segment that could change a flow's state (SYN, FIN, RST, no ACK) or
 * that the engine's plausibility check would refuse.
 *
 * The race with the engine: the client may send several segments right
 * after its cookie ACK. The engine publishes the new flow only after it
 * processed that ACK, so the later segments (SEQ past ISN + 1, no longer a
 * valid cookie) could reach this program first and be reset. So the program
 * itself inserts the 4-tuple into sg_tracked (origin XDP) when it hands a
 * valid cookie ACK on (up, or as the backend SYN), and pushes the key to
 * sg_new_tracked; the engine drains that queue, confirms the entry when it
 * creates the flow and deletes it at a deadline otherwise (no sweep of the
 * map).
 *
 * Layout: this file holds the two programs; what they do is in bpf/lib/,
 * one concept per header, each opening with what it owns, included below in
 * dependency order: maps.h (the shared maps, counters, the pass verdict),
 * mac.h (SipHash and the cookie MAC input), parse.h (classify, headers,
 * options, checksum check), params.h (the engine's parameters and clocks),
 * reply.h (a frame turned into a reply in place), cookie.h (minting inputs
 * and checking), forward.h (established flows: translate and redirect),
 * backend.h (a valid cookie ACK -> the backend SYN, the server's SYN-ACK ->
 * the client's ACK and the flow, reported in sg_events), handshake.h (SYN
 * -> SYN-ACK, ACK for no tracked tuple, RST budgets) and ports.h (the start
 * both programs share, bridging).
 *
 * Build: bpf/build.sh (clang -target bpf, reproducible flags).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "synguard_xdp.h"

#include "lib/maps.h"
#include "lib/mac.h"
#include "lib/parse.h"
#include "lib/params.h"
#include "lib/reply.h"
#include "lib/cookie.h"
#include "lib/forward.h"
#include "lib/backend.h"
#include "lib/handshake.h"
#include "lib/ports.h"

SEC("xdp")
int sg_fast_path(struct xdp_md *ctx)
{
	struct parsed *p = scratch_parsed();
	if (!p)
		return pass();
	struct sg_service *svc = 0;
	int verdict = service_segment(ctx, p, 0, &svc);
	if (verdict >= 0 || !svc)
		return verdict >= 0 ? verdict : pass();

	/* TCP-MD5 / TCP-AO: the engine bridges or drops them whatever their
	 * flags (src/engine/mod.rs client_segment checks this first). */
	if (p->opts.auth_option)
		return pass();
	__u8 f = p->flags;
	int retired = svc->flags & SG_SERVICE_RETIRED;
	/* src/engine/mod.rs client_segment: a SYN with ACK, RST or FIN. */
	if (!retired && (f & TCP_SYN) && (f & (TCP_ACK | TCP_RST | TCP_FIN))) {
		count(SG_C_DROP_INVALID_FLAGS);
		return XDP_DROP;
	}

	if (!(f & TCP_SYN)) {
		int r = forward(ctx, p, 0, 0);
		if (r >= 0)
			return r;
	}

	__u64 now_ms = 0;
	const struct sg_params *prm = fresh_params(&now_ms);
	if (!prm) {
		count(SG_C_STALE);
		return pass();
	}
	/* A tuple the engine tracks (flow or half-open entry) is its business:
	 * retransmitted SYNs, RFC 5961 challenge ACKs, established data. A SYN
	 * asks sg_tracked only when the engine filter says the engine may track
	 * its tuple (the program's own entries, made for the segments right
	 * after a cookie ACK, do not concern SYNs). */
	if (!(f & TCP_SYN) || engine_may_track(&p->key)) {
		if (bpf_map_lookup_elem(&sg_tracked, &p->key)) {
			/* Data behind a cookie ACK the program sent on as the
			 * backend SYN: kept for the SYN-ACK to release. */
			if (prm->handshakes && p->l4_len > p->tcp_hlen &&
			    (f & (TCP_SYN | TCP_RST | TCP_FIN | TCP_URG | TCP_ACK)) == TCP_ACK) {
				int r = early_data(ctx, p, now_ms);
				if (r >= 0)
					return r;
			}
			return pass();
		}
	}

	if (retired || ((svc->flags & SG_SERVICE_ADOPTING) && !(f & TCP_SYN))) {
		/* src/engine/mod.rs retired_client_segment and `unclaimed`: an
		 * ACK with a valid cookie is a handshake of the engine's; the rest
		 * belongs to connections it does not carry. */
		struct sg_cookie c;
		if ((f & (TCP_SYN | TCP_RST | TCP_ACK)) == TCP_ACK && cookie_check(p, prm, now_ms, &c)) {
			if (prm->handshakes && p->l4_len == p->tcp_hlen && tcp_checksum_ok(ctx, p)) {
				int r = backend_syn(ctx, p, now_ms, svc->flags, &c);
				if (r >= 0)
					return r;
			}
			return pass();
		}
		return bridge(SG_PORT_SERVER);
	}

	if (f & TCP_SYN) {
		if (now_ms >= prm->stateless_until_ms)
			return pass(); /* the half-open queue is in charge */
		if (svc->flags & SG_SERVICE_SYNS_UP)
			return pass(); /* its backend is down */
		if (p->l4_len != p->tcp_hlen)
			return pass(); /* payload: checksum not verified here */
		if (!tcp_checksum_ok(ctx, p))
			return pass();
		return on_syn(ctx, p, prm, now_ms, svc->offer_mask);
	}
	if (f & TCP_RST) {
		count(SG_C_DROP_NO_FLOW);
		return XDP_DROP;
	}
	if (!(f & TCP_ACK)) {
		count(SG_C_DROP_INVALID_FLAGS);
		return XDP_DROP;
	}
	if (p->l4_len != p->tcp_hlen)
		return pass();
	if (!tcp_checksum_ok(ctx, p))
		return pass();
	return on_ack(ctx, p, prm, now_ms, svc->flags);
}

/* The server port: segments of published flows toward their clients, and
 * what the engine would bridge; everything else goes up. */
SEC("xdp")
int sg_server_port(struct xdp_md *ctx)
{
	struct parsed *p = scratch_parsed();
	if (!p)
		return pass();
	struct sg_service *svc = 0;
	int verdict = service_segment(ctx, p, 1, &svc);
	if (verdict >= 0 || !svc)
		return verdict >= 0 ? verdict : pass();
	if (p->opts.auth_option)
		return pass();
	int r = forward(ctx, p, 1, 0);
	if (r >= 0)
		return r;
	__u64 now_ms = 0;
	const struct sg_params *prm = fresh_params(&now_ms);
	if (!prm)
		return pass();
	r = backend_reply(ctx, p, prm, now_ms);
	return r < 0 ? pass() : r;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
