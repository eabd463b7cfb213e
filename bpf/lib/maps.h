// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/maps.h: every map the two programs share with the engine (their
 * layouts in bpf/synguard_xdp.h, mirrored by src/io/xdp/maps.rs), the
 * per-CPU counters, and the verdict that hands a frame up. It owns no
 * packet logic and never writes a map entry the engine owns.
 */
#ifndef SG_LIB_MAPS_H
#define SG_LIB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "synguard_xdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_params);
} sg_params SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct sg_service_key);
	__type(value, struct sg_service);
} sg_services SEC(".maps");

/* Sized by the loader (flows + backlog + pending inserts); not LRU, so a
 * live flow is never evicted: a full map only means a failed insert. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sg_flow_key);
	__type(value, struct sg_tracked);
} sg_tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 65536);
	__type(value, struct sg_flow_key);
} sg_new_tracked SEC(".maps");

/* How many engine-published tuples (origin ENGINE in sg_tracked) fall in
 * each slot of SG_FILTER_SLOTS, by sg_filter_slot(). Written only by the
 * engine's side (src/io/xdp), so plain counts suffice. A SYN whose slot is
 * 0 is tracked by no engine flow or queue entry, and skips the sg_tracked
 * lookup, which costs a hash of 40 bytes and a bucket probe: measured 190
 * of 432 ns per SYN of a spoofed flood. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SG_FILTER_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} sg_engine_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SG_C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} sg_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_rst_budget);
} sg_rst_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u8[16]);
	__type(value, struct sg_rst_source);
} sg_rst_sources SEC(".maps");

/* Sized by the loader like sg_tracked (every flow may be published). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sg_flow_key);
	__type(value, struct sg_flow);
} sg_flows SEC(".maps");

/* Sized by the loader like sg_tracked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sg_flow_key);
	__type(value, struct sg_handshake);
} sg_handshakes SEC(".maps");

/* An entry of sg_handshakes being built (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_handshake);
} sg_hs_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SG_EVENTS_BYTES);
} sg_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val); /* as aya writes it */
} sg_tx_ports SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&sg_counters, &idx);
	if (c)
		*c += 1;
}

static __always_inline int engine_may_track(const struct sg_flow_key *k)
{
	__u32 slot = sg_filter_slot(k);
	__u32 *n = bpf_map_lookup_elem(&sg_engine_filter, &slot);
	return !n || *n != 0;
}

static __always_inline int pass(void)
{
	count(SG_C_PASS);
	return XDP_PASS;
}

#endif /* SG_LIB_MAPS_H */
