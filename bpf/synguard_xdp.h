/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Map layouts shared by bpf/synguard_xdp.c and src/io/xdp/maps.rs (the Rust
 * twins are #[repr(C)] structs with the same sizes, checked by tests).
 * Changing anything here means changing both and rebuilding the object
 * (bpf/build.sh).
 */
#ifndef SYNGUARD_XDP_H
#define SYNGUARD_XDP_H

#include <linux/types.h>

/* sg_params (ARRAY, 1 entry): what the engine publishes, rewritten every
 * I/O batch. The program never reads the secret file; it reads this. */
struct sg_params {
	__u64 k0, k1;              /* SipHash-2-4 key: secret bytes 0..8, 8..16 (LE) */
	__u64 clock_ms;            /* engine clock (CLOCK_MONOTONIC ms) ...          */
	__u64 mono_ns;             /* ... at this CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 stale_after_ns;      /* older than this: pass everything up            */
	__u64 stateless_until_ms;  /* SYNs get cookies while now_ms < this           */
	__s64 wall_offset_ms;      /* wall clock - engine clock: cookie slots        */
	__u32 slot_seconds;
	__u32 rst_per_second;
	__u16 mss_v4, mss_v6;      /* MSS the SYN-ACK advertises                     */
	__u16 synack_window;
	__u8 synack_wscale;
	__u8 invalid_ack_rst;      /* 1: RST (seq = SEG.ACK) within budget, 0: drop  */
	__u8 enabled;              /* 0 until the engine wrote the entry             */
	__u8 handshakes;           /* 1: the engine reads sg_events, so a valid      */
	                           /* cookie ACK becomes the backend SYN here        */
	__u8 pad[2];
	__u32 rst_per_source;      /* RSTs per second to one source address          */
	__u64 k0_accepted, k1_accepted; /* a second key cookies are checked with ... */
	__u64 accepted_until_s;    /* ... before this wall-clock second (0: none)    */
};

/* sg_services (HASH): protected (address, port). IPv4 as v4-mapped IPv6. */
struct sg_service_key {
	__u8 addr[16];
	__be16 port;
	__u8 family;               /* 4 or 6 */
	__u8 pad;
};

/* Bit per option the SYN-ACK may offer (the backend supports it). */
#define SG_OFFER_TIMESTAMPS (1u << 0)
#define SG_OFFER_SACK       (1u << 1)
#define SG_OFFER_WSCALE     (1u << 2)
#define SG_OFFER_ECN        (1u << 3)

struct sg_service {
	__u8 offer_mask;
	__u8 flags;                /* SG_SERVICE_* */
	__u8 pad[2];
};

/* The service's backend is down: its SYNs go up, the engine bridges them
 * to the server (src/engine/pass_through.rs). */
#define SG_SERVICE_SYNS_UP (1u << 0)
/* No longer protected since a reload (src/engine/protected.rs): only the
 * tuples the engine tracks and ACKs with a valid cookie are its; the rest
 * is bridged. */
#define SG_SERVICE_RETIRED (1u << 1)
/* Added by a reload, taking over connections made before (src/engine/
 * pass_through.rs): its segments that are no connection of the engine's
 * are bridged, SYNs answered as usual. */
#define SG_SERVICE_ADOPTING (1u << 2)
/* Its server accepted timestamps in its last backend handshake that offered
 * them (src/engine/service_profile.rs accepted): the backend SYN carries
 * the client's MSS; else 12 less, room for the timestamps the gateway adds
 * if the server declines them (src/engine/handshake.rs
 * TIMESTAMP_OPTION_SPACE). */
#define SG_SERVICE_TS_ACCEPTED (1u << 3)

/* sg_tracked (HASH, no LRU): 4-tuples the engine must see (flows, half-open
 * entries), published by the engine; the program inserts a tuple itself when
 * it passes a valid cookie ACK up (see the race note in bpf/synguard_xdp.c). */
struct sg_flow_key {
	__u8 client[16];
	__u8 server[16];
	__be16 client_port;
	__be16 server_port;
	__u8 family;
	__u8 pad[3];
};

/* The engine filter (sg_engine_filter in bpf/lib/maps.h): slots and the
 * slot of a tuple; src/io/xdp/maps.rs SgFlowKey::filter_slot is its twin. */
#define SG_FILTER_SLOTS 65536
static inline __u32 sg_filter_slot(const struct sg_flow_key *k)
{
	__u32 c = ((__u32)k->client[12] << 24) | ((__u32)k->client[13] << 16) |
		  ((__u32)k->client[14] << 8) | k->client[15];
	__u32 s = ((__u32)k->server[12] << 24) | ((__u32)k->server[13] << 16) |
		  ((__u32)k->server[14] << 8) | k->server[15];
	const __u8 *cp = (const __u8 *)&k->client_port;
	const __u8 *sp = (const __u8 *)&k->server_port;
	__u32 ports = ((__u32)cp[0] << 24) | ((__u32)cp[1] << 16) | ((__u32)sp[0] << 8) | sp[1];
	__u32 h = (c ^ ((s << 7) | (s >> 25)) ^ ports) * 0x9e3779b1u;
	return h >> 16;
}

#define SG_ORIGIN_ENGINE 1
#define SG_ORIGIN_XDP    2

struct sg_tracked {
	__u64 since_ns;
	__u8 origin;
	__u8 pad[7];
};

/* Counter indices of sg_counters (PERCPU_ARRAY of __u64). */
enum sg_counter {
	SG_C_RX = 0,              /* frames the program looked at          */
	SG_C_PASS,                /* XDP_PASS                              */
	SG_C_SYN_RECEIVED,        /* SYNs answered in XDP                  */
	SG_C_SYNACK_COOKIE,       /* cookie SYN-ACKs sent (XDP_TX)         */
	SG_C_COOKIES_FAILED,      /* ACKs for no flow with a bad cookie    */
	SG_C_RST_SENT,            /* RSTs sent (XDP_TX)                    */
	SG_C_DROP_INVALID_COOKIE,
	SG_C_DROP_RST_BUDGET,
	SG_C_DROP_INVALID_FLAGS,
	SG_C_DROP_NO_FLOW,
	SG_C_COOKIE_PASSED,       /* valid cookie ACKs passed to the engine */
	SG_C_TRACK_INSERT_FAILED, /* tracked map or queue full              */
	SG_C_STALE,               /* params stale or unset: passed up       */
	SG_C_FWD_TO_SERVER,       /* flow segments translated and redirected */
	SG_C_FWD_TO_CLIENT,
	SG_C_BRIDGED_TO_SERVER,   /* not for a protected service: redirected */
	SG_C_BRIDGED_TO_CLIENT,   /* unchanged, as the engine bridges them   */
	SG_C_BACKEND_SYN,         /* cookie ACKs turned into backend SYNs    */
	SG_C_EVENTS_FULL,         /* sg_events full: the frame went up       */
	SG_C_BACKEND_ESTABLISHED, /* backend SYN-ACKs turned into the ACK    */
	SG_C_EARLY_DATA,          /* client data kept while the SYN is out  */
	SG_C_COUNT
};

/* sg_flows (HASH, sg_flow_key -> sg_flow): established flows the program
 * translates and redirects to the other port itself. The whole entry is
 * written once, by the engine when it publishes the flow (translation and
 * the progress it knows) or by the server program when it completes a
 * backend handshake it started (bpf/lib/backend.h); the engine deletes it
 * on the flow's next state change. After that write the program only
 * writes the progress fields, which the engine reads back
 * (src/io/xdp ForwardProgressReader) before it acts on the flow. Several
 * CPUs may write progress at once, the two directions of one flow on two
 * CPUs (tests/xdp_forward.rs both_directions_on_two_cpus_at_once_lose_nothing):
 * each field has one writer direction, client_* the client port's program,
 * server_* and server_fin the server port's, and each write is one plain
 * store; last_seen_ms is written by both with the same clock (the later
 * store wins, either is right). Two CPUs on one direction (a NIC spreading
 * one flow over two queues) can lose a maximum: only a smaller plausibility
 * window for a moment. */
struct sg_flow {
	/* Translation (src/engine/flow.rs Flow, same names). */
	__u32 seq_delta;          /* + on server SEQ toward the client          */
	__u32 ts_offset;          /* + on server TSval, - on client TSecr       */
	__u8 timestamps;          /* translate TSval / TSecr                    */
	__u8 c2s_from, c2s_to;    /* window shifts client->server (WindowRescale) */
	__u8 s2c_from, s2c_to;    /* and server->client                         */
	__u8 server_fin;          /* 1: the program forwarded the server's FIN  */
	__u8 pad[2];
	/* Progress (engine clock, sequence spaces as in Flow). */
	__u64 last_seen_ms;
	__u32 client_next, server_next;
	__u32 client_window_max, server_window_max;
	__u32 client_last_tsval, server_last_tsval;
	__u16 client_last_window, server_last_window;
	__u32 server_fin_end;     /* SEQ + LEN of that FIN (server space)        */
	/* The rest of the flow, for the engine only (the program never reads
	 * it): what rebuilds the engine's flow from this map when a new
	 * process adopts it after a crash (src/io/xdp/maps.rs SgFlow). */
	__u8 l2[22];              /* Ethernet header client->server, VLAN tags */
	__u8 l2_len;
	__u8 client_opts;         /* bit 0 timestamps, 1 SACK, 2 ECN, 3 wscale */
	__u32 client_isn, gateway_isn, gateway_tsval, server_isn, gateway_last_tsval;
	__u16 client_mss;
	__u8 client_wscale;
	__u8 backend_syn_sent;
	__u64 opened_ms;
};

/* sg_tx_ports (DEVMAP): the redirect targets, the client port's ifindex
 * at SG_PORT_CLIENT and the server port's at SG_PORT_SERVER. The client
 * port runs sg_fast_path, the server port sg_server_port. */
#define SG_PORT_CLIENT 0
#define SG_PORT_SERVER 1

/* sg_rst_budget (ARRAY, 1 entry): the engine's SendBudget
 * (src/engine/send_budget.rs): this second's random allowance and what it
 * sent, shared by all CPUs. */
struct sg_rst_budget {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 second;              /* engine clock, s */
	__u32 allowed, sent;
};

/* sg_rst_sources (LRU_HASH, key: source address as sg_flow_key.client):
 * the engine's SourceBudgets, this second's RSTs to one source. */
struct sg_rst_source {
	__u64 second;
	__u32 sent;
	__u32 pad;
};

/* sg_events (RINGBUF): what the program did that changes the engine's
 * picture, one record per frame it acted on, in the order it acted. The
 * record carries the frame as it arrived, before the program rewrote it:
 * the engine replays it through its own handling (the twin of the
 * program's) and so ends up in the state it would be in had it handled the
 * frame itself (src/io/xdp/events.rs). A record is reserved before the
 * program acts; when the ring is full the program does not act and passes
 * the frame up instead (SG_C_EVENTS_FULL), so the engine never misses a
 * change. */
#define SG_EVENT_FRAME_MAX 256
#define SG_EVENTS_BYTES (1u << 21)

enum sg_event_kind {
	/* A valid cookie ACK, sent on as the backend SYN. */
	SG_EV_BACKEND_SYN = 1,
	/* The server's SYN-ACK to such a SYN: the flow is in sg_flows, the
	 * last client segment the engine holds for it (sg_event.released) went
	 * to the server translated; it stands for the ones before it. */
	SG_EV_BACKEND_ESTABLISHED = 2,
	/* The client's first data segment while such a SYN is outstanding,
	 * kept in sg_handshakes (the frame is dropped: the SYN-ACK releases
	 * it). */
	SG_EV_EARLY_DATA = 3,
};

/* sg_handshakes (HASH, sg_flow_key -> sg_handshake): backend handshakes
 * the program started (SG_EV_BACKEND_SYN) and may complete itself: what
 * the engine's flow holds in BACKEND_SYN_SENT (src/engine/handshake.rs
 * on_handshake_ack), and the client segment the server's SYN-ACK releases:
 * the client's ACK, or the first data segment behind it (early data,
 * SG_EV_EARLY_DATA), which carries the same acknowledgment. Writers: the
 * client program inserts an entry, and replaces it whole once with the
 * early data (a reader holding the old one releases only the ACK and says
 * so); the server program deletes it when it completes the handshake or
 * hands a server segment up; the engine deletes it when it takes the
 * handshake over (a client segment came up, the flow ended). */
#define SG_RELEASE_MAX SG_EVENT_FRAME_MAX

struct sg_handshake {
	__u64 opened_ms;           /* engine clock at the backend SYN            */
	__u32 client_isn, gateway_isn;
	__u32 gateway_tsval;       /* the ACK's TSecr                             */
	__u32 client_last_tsval;   /* the ACK's TSval                             */
	__u32 client_window_max;   /* the ACK's window << the client's shift      */
	__u16 client_last_window;  /* the ACK's window field                      */
	__u16 client_mss;          /* from the cookie (before any 12 off)         */
	__u8 client_opts;          /* as sg_flow.client_opts                      */
	__u8 client_wscale;        /* 0xff: none                                  */
	__u8 l3_off;               /* 14 or 18: the ACK's Ethernet header length  */
	__u8 held;                 /* client segments the engine holds for it: 1,
	                            * the ACK; 2, the ACK and the early data     */
	__u16 release_len;         /* bytes of release[]                          */
	__u16 pad;
	__u8 l2[18];               /* the ACK's Ethernet header (l3_off bytes)    */
	__u8 release[SG_RELEASE_MAX]; /* the client segment to release, as it
	                               * arrived: the ACK, or the early data    */
};

struct sg_event {
	__u64 now_ms;              /* engine clock when the program acted */
	__u16 kind;                /* enum sg_event_kind */
	__u16 frame_len;           /* bytes of frame[] used */
	__u8 released;             /* SG_EV_BACKEND_ESTABLISHED: how many of the
	                            * client segments the engine holds the one
	                            * sent stands for (sg_handshake.held) */
	__u8 pad[3];
	__u8 frame[SG_EVENT_FRAME_MAX];
};

/* Hash input tag of the RST budget's draws (send_budget.rs TAG_RST). */
#define SG_TAG_RST 0xb1

#endif
