// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/ports.h: the start both programs share: count, classify, parse,
 * key a segment as its flow's (client, server) tuple and find its
 * protected service; what the engine would bridge is redirected unchanged
 * to the other port (sg_tx_ports). It decides nothing for a protected
 * service's segments.
 */
#ifndef SG_LIB_PORTS_H
#define SG_LIB_PORTS_H

#include "maps.h"
#include "parse.h"

/* Redirect a frame unchanged to port `out`, as the engine bridges it; up
 * when that port is no redirect target. */
static __always_inline int bridge(__u32 out)
{
	if (!bpf_map_lookup_elem(&sg_tx_ports, &out))
		return pass();
	count(out == SG_PORT_SERVER ? SG_C_BRIDGED_TO_SERVER : SG_C_BRIDGED_TO_CLIENT);
	return bpf_redirect_map(&sg_tx_ports, out, 0);
}

/* A server->client segment's key as the flow's (client, server) tuple. */
static __always_inline void swap_key(struct sg_flow_key *k)
{
	__u8 a[16];
	__builtin_memcpy(a, k->client, 16);
	__builtin_memcpy(k->client, k->server, 16);
	__builtin_memcpy(k->server, a, 16);
	__be16 port = k->client_port;
	k->client_port = k->server_port;
	k->server_port = port;
}

/* The start both programs share: count, classify, parse, key the segment
 * as its flow's (client, server) tuple and find its protected service.
 * Returns -1 with *svc set for a segment of a protected service, else the
 * verdict: what the engine would bridge is redirected to the other port,
 * what is not fully parsed goes up. */
static __always_inline int service_segment(struct xdp_md *ctx, struct parsed *p,
					   int from_server, struct sg_service **svc)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 out = from_server ? SG_PORT_CLIENT : SG_PORT_SERVER;

	count(SG_C_RX);
	int class = classify(data, data_end);
	if (class == CLASS_BRIDGE)
		return bridge(out);
	if (class == CLASS_UP || parse(data, data_end, p))
		return pass();
	if (from_server)
		swap_key(&p->key);
	struct sg_service_key sk = {};
	__builtin_memcpy(sk.addr, p->key.server, 16);
	sk.port = p->key.server_port;
	sk.family = p->key.family;
	*svc = bpf_map_lookup_elem(&sg_services, &sk);
	if (!*svc)
		return bridge(out); /* TCP to or from no protected service */
	return -1;
}

#endif /* SG_LIB_PORTS_H */
