// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A program that passes every frame: attached to the lab's end-host veths
 * (never to the gateway), because a frame the gateway sends back with
 * XDP_TX reaches the peer veth only when the peer runs an XDP program
 * itself (drivers/net/veth.c: veth_xdp_xmit queues the frame on the peer's
 * XDP ring, whose NAPI is only set up while a program is attached;
 * design.md section 8). A real NIC needs nothing of the kind.
 *
 * Build: bpf/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
