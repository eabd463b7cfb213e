// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/params.h: the engine's parameters (sg_params) and the clocks the
 * program reads from them: the engine clock, and wall-clock seconds for
 * cookie slots and key rotations. It never writes sg_params (the engine
 * does, src/io/xdp/mod.rs).
 */
#ifndef SG_LIB_PARAMS_H
#define SG_LIB_PARAMS_H

#include "maps.h"

static __always_inline const struct sg_params *fresh_params(__u64 *now_ms)
{
	__u32 zero = 0;
	const struct sg_params *p = bpf_map_lookup_elem(&sg_params, &zero);
	if (!p || !p->enabled || p->slot_seconds == 0)
		return 0;
	__u64 mono = bpf_ktime_get_ns();
	__u64 age = mono > p->mono_ns ? mono - p->mono_ns : 0;
	if (age > p->stale_after_ns)
		return 0;
	*now_ms = p->clock_ms + age / 1000000;
	return p;
}

/* The engine clock now, 0 when the engine never wrote its parameters.
 * Stale parameters still give the time: flows keep being forwarded (and
 * their last-seen time kept) while no engine runs. */
static __always_inline __u64 engine_now_ms(void)
{
	__u32 zero = 0;
	const struct sg_params *prm = bpf_map_lookup_elem(&sg_params, &zero);
	if (!prm || !prm->enabled)
		return 0;
	__u64 mono = bpf_ktime_get_ns();
	return prm->clock_ms + (mono > prm->mono_ns ? mono - prm->mono_ns : 0) / 1000000;
}

/* Wall-clock seconds at engine time now_ms: cookie slots and key rotations
 * count them (instances sharing a secret agree on them), every timer counts
 * the monotonic engine clock (src/engine/cookie_clock.rs). */
static __always_inline __u64 wall_seconds(const struct sg_params *prm, __u64 now_ms)
{
	return (now_ms + (__u64)prm->wall_offset_ms) / 1000;
}

#endif /* SG_LIB_PARAMS_H */
