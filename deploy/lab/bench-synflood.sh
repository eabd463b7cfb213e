#!/usr/bin/env bash
# deploy/lab/bench-synflood.sh — SYN-flood benchmark: synguard (XDP on, XDP off),
# nftables SYNPROXY and the server kernel's own SYN cookies, side by side in one run,
# on one shared core and with the protection's kernel work on a core of its own
# (issue 9, "Benchmark"; design.md section 8). A benchmark, not a timed test: it
# prints numbers and never fails on them.
#
# Lab rules (design.md section 6): only namespaces this script creates (suffix
# unique to the run), linked only to each other, never to the root namespace, no
# route out; addresses only from 198.18.0.0/15; XDP only on interfaces inside those
# namespaces; every flood bounded in time (timeout) and count (trafgen -n); the
# script kills only what it started (by PID) and deletes its namespaces on exit,
# failure or Ctrl-C. It holds /tmp/synguard-lab.lock for the whole run so it never
# overlaps the project's lab tests.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench-synflood.sh [-d SECONDS] [-r PPS] [-c CONNECTS] [-V LIST] [-P LIST]
                         [-g hop|direct] [-b BINARY] [-l DIR] [-h]

Floods a server through each protection with trafgen (one generator process,
SYNs with MSS 1460 from 32 spoofed sources 198.18.3.0/27, random source ports
and ISNs, to 198.18.0.2:8080), counts the SYN-ACKs that reach the client
namespace, and runs legitimate connects (connect() + 1 byte each way, from
198.18.0.1) during the flood. Every (variant, placement) gets fresh namespaces.

Options:
  -d SECONDS   measured window per run, 2..60 (default 5). Each flood runs
               1 s of warm-up + SECONDS + 2 s, at most RATE x (SECONDS + 3)
               packets (RATE 2000000 when -r 0), under timeout(1).
  -r PPS       generator rate in packets/s (trafgen -b), 0 = as fast as one
               trafgen process goes (default 0), at most 2000000. trafgen's
               pacing is loose: check the offered/s column (asked 450000,
               measured 808000-974000 on the 2 vCPU VM)
  -c CONNECTS  legitimate connects per run, spread over the window, 1..1000
               (default 100); each may take up to 5 s (SYN retransmissions)
  -V LIST      variants, comma-separated (default all, in this order):
                 xdp       synguard, [io] xdp = "native" (generic if native
                           attach fails: noted), [syn_queue] syncookies = "always"
                 afpacket  synguard, xdp = "off", syncookies = "always"
                 synproxy  nftables SYNPROXY (gateway as an IPv4 router with
                           proxy ARP, conntrack, notrack for SYNs,
                           synproxy mss 1460 wscale 7 timestamp sack-perm)
                 kernel    gateway a plain Linux bridge, the server's kernel
                           answers with its own cookies (tcp_syncookies=2)
  -P LIST      placements, comma-separated (default shared,own):
                 shared    everything on CPU 0: generator, gateway, server,
                           client and all softirq work (NAPI not threaded)
                 own       the protection on CPU 1: threaded NAPI on the
                           gateway's two veths and the server's veth, their
                           kthreads (SCHED_FIFO 50), synguard and the server
                           process there; generator and legitimate client on
                           CPU 0. The client's veth is not threaded: its
                           receive work (the SYN-ACK sink) follows the sender
                           and also runs on CPU 1, alike for every variant.
                           Needs 2 CPUs.
  -g MODE      how the generator's frames reach the client veth (default hop):
                 hop       trafgen sends on a veth pair of its own in the
                           client namespace, whose far end redirects every
                           frame in XDP (bpf/bench_redirect.o) to the client
                           veth: the gateway receives XDP frames in pages,
                           as from a NIC, and the copy of trafgen's frames
                           and their freeing stay on the generator's CPU
                 direct    trafgen sends on the client veth itself: its
                           skbs are copied and freed by the gateway veth's
                           receive work, on the gateway's CPU (measured with
                           perf: over half of CPU 1 during an "own" flood)
  -b BINARY    synguard binary (default $SYNGUARD_BIN, else
               target/release/synguard; build it with cargo build --release)
  -l DIR       keep per-run logs (synguard, server, trafgen, client) in DIR
               (default: a temporary directory, deleted at exit)
  -h           this help

Output, one row per (placement, variant):
  offered/s    SYNs the generator sent per second (nftables netdev egress
               counter on trafgen's veth; a SYN the gateway veth's full ring
               refuses counts as offered, not answered)
  synack/s     SYN-ACKs to 198.18.3.0/27 counted (and dropped) by an XDP
               program on the client veth (bpf/bench_synack_sink.o) per second
  xSYNPROXY    synack/s divided by SYNPROXY's synack/s in the same placement
  answered     synack/s / offered/s
  legit        legitimate connects that completed / attempted
  p50, p99     connect() + first byte of the answer, completed connects, ms
  cpu1_ns      "own" only: CPU 1's busy time per SYN-ACK, in ns (its share
               busy in /proc/stat x 1e9 / synack/s): what answering one SYN
               costs the protection's core, whatever the offered rate

Needs root, 2 CPUs for "own", and: ip ethtool trafgen (netsniff-ng) nft python3
taskset chrt flock timeout cc bpftool, bpf/xdp_pass.o, bpf/bench_synack_sink.o and
bpf/bench_redirect.o.
Runtime about 20 s per row.
EOF
}

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
BENCH_NAME=bench-synflood.sh
# shellcheck source=deploy/lab/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)

DURATION=5
RATE=0
CONNECTS=100
VARIANTS=xdp,afpacket,synproxy,kernel
PLACEMENTS=shared,own
GEN=hop
BIN=${SYNGUARD_BIN:-$REPO_ROOT/target/release/synguard}
LOGDIR=
while getopts ":d:r:c:V:P:g:b:l:h" opt; do
    case $opt in
    d) DURATION=$OPTARG ;;
    r) RATE=$OPTARG ;;
    c) CONNECTS=$OPTARG ;;
    V) VARIANTS=$OPTARG ;;
    P) PLACEMENTS=$OPTARG ;;
    g) GEN=$OPTARG ;;
    b) BIN=$OPTARG ;;
    l) LOGDIR=$OPTARG ;;
    h)
        usage
        exit 0
        ;;
    :) die "-$OPTARG needs a value (see -h)" ;;
    *) die "unknown option -$OPTARG (see -h)" ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || die "unexpected argument $1 (see -h)"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 2 && $DURATION -le 60 ]] || die "-d must be 2..60"
[[ $RATE =~ ^[0-9]+$ && $RATE -le 2000000 ]] || die "-r must be 0..2000000"
[[ $CONNECTS =~ ^[0-9]+$ && $CONNECTS -ge 1 && $CONNECTS -le 1000 ]] || die "-c must be 1..1000"
[[ $GEN == hop || $GEN == direct ]] || die "-g must be hop or direct"
IFS=, read -r -a VARIANT_LIST <<<"$VARIANTS"
IFS=, read -r -a PLACEMENT_LIST <<<"$PLACEMENTS"
for v in "${VARIANT_LIST[@]}"; do
    case $v in xdp | afpacket | synproxy | kernel) ;; *) die "unknown variant '$v' (see -h)" ;; esac
done
for p in "${PLACEMENT_LIST[@]}"; do
    case $p in shared | own) ;; *) die "unknown placement '$p' (see -h)" ;; esac
done

require "$REPO_ROOT" ip ethtool trafgen nft python3 taskset chrt flock timeout sysctl cc bpftool
SINK_OBJ=$REPO_ROOT/bpf/bench_synack_sink.o
REDIRECT_OBJ=$REPO_ROOT/bpf/bench_redirect.o
require_synguard "$BIN" "${VARIANT_LIST[@]}"
NCPU=$(nproc)
for p in "${PLACEMENT_LIST[@]}"; do
    [[ $p != own || $NCPU -ge 2 ]] || die "placement 'own' needs 2 CPUs, this machine has $NCPU"
done

# Lab addresses (all inside 198.18.0.0/15).
CLIENT_V4=198.18.0.1
SERVER_V4=198.18.0.2
GWC_V4=198.18.2.1 # router variant only (synproxy): the gateway's own addresses
GWS_V4=198.18.2.2
SPOOF_NET=198.18.3.0/27
PORT=8080
METRICS=127.0.0.1:9150 # inside the gateway namespace only

# Run-unique names. Namespaces: sg-bench-{cli,gw,srv}-PID-N (N counts the runs).
TAG=$$
TMPD=$(mktemp -d /tmp/sg-bench.XXXXXX)
install_cleanup
if [[ -z $LOGDIR ]]; then
    LOGDIR=$TMPD/logs
fi
mkdir -p "$LOGDIR"

# trafgen's send buffer. Every frame trafgen sends is charged to its AF_PACKET
# socket until the receiving veth's NAPI frees it. With threaded NAPI on another
# core ("own"), up to the veth ring (256 frames) plus a NAPI batch are in flight,
# which exceeds the default 212992-byte send buffer; sendto() then fails with
# EAGAIN and trafgen exits ("Flushing TX_RING failed"). trafgen only tries to raise
# net.core.wmem_default, which a namespace cannot write (and we must not change
# the root namespace's). This preload forces a 64 MiB send buffer on trafgen's
# AF_PACKET socket (SO_SNDBUFFORCE, root) and nothing else; frames the gateway
# cannot take are then dropped by veth at its full ring (client tx_dropped), as a
# NIC drops at a full receive ring. Used in every run, so all runs are alike.
SHIM=$TMPD/sndbuf-shim.so
cc -O2 -shared -fPIC -o "$SHIM" -x c - -ldl <<'EOF' || die "cannot build the trafgen send-buffer preload with cc"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
int socket(int domain, int type, int protocol)
{
    static int (*real)(int, int, int);
    if (!real)
        real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    int fd = real(domain, type, protocol);
    if (fd >= 0 && domain == AF_PACKET) {
        int v = 64 << 20;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v);
    }
    return fd;
}
EOF

# NAPI kthreads are named napi/IF-ID; the run-unique gateway interface names make
# them ours (and the lock keeps other benches away).
napi_pids() { # IF
    ps -eo pid=,comm= | awk -v p="napi/$1-" 'index($2, p) == 1 { print $1 }'
}

metric() { # NAME_PREFIX: sum of the gateway's samples whose line starts with it
    nsx "$NS_GW" python3 - "$METRICS" "$1" <<'PY' 2>/dev/null || echo "?"
import sys, urllib.request
body = urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=3).read().decode()
t = 0.0
for line in body.splitlines():
    if line.startswith(sys.argv[2]):
        t += float(line.rsplit(" ", 1)[1])
print(int(t))
PY
}

# --- embedded peers -----------------------------------------------------------
PY_SERVER='
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
while True:
    c, _ = s.accept()
    try:
        c.settimeout(5)
        if c.recv(1):
            c.sendall(b"C")
    except OSError:
        pass
    c.close()
'
# N connects, one started every SPREAD/N seconds (each in its own thread, so a slow
# one never delays the next); each: connect() + b"C" + wait for the first byte back,
# timed from before connect(); 5 s timeout. Prints "ok N p50_ms p99_ms".
PY_CLIENT='
import socket, sys, threading, time
host, port, n, spread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
res = [None] * n
def one(i):
    t0 = time.perf_counter()
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"C")
        if s.recv(1) == b"C":
            res[i] = (time.perf_counter() - t0) * 1000.0
        s.close()
    except OSError:
        pass
start = time.perf_counter()
ths = []
for i in range(n):
    delay = start + i * spread / n - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    t = threading.Thread(target=one, args=(i,))
    t.start()
    ths.append(t)
for t in ths:
    t.join()
ok = sorted(x for x in res if x is not None)
def pct(p):
    if not ok:
        return "-"
    k = max(0, min(len(ok) - 1, -(-len(ok) * p // 100) - 1))
    return "%.2f" % ok[int(k)]
print("ok", len(ok), pct(50), pct(99))
'

# --- one run ------------------------------------------------------------------
RUN_NO=0
# The id of the (only) map of the XDP program on an interface of the client namespace.
xdp_map_id() { # IF
    local prog map
    prog=$(ip -n "$NS_CLI" -d link show dev "$1" | sed -n 's/.*prog\/xdp id \([0-9]*\).*/\1/p' | head -n 1)
    map=$(bpftool prog show id "$prog" | sed -n 's/.*map_ids \([0-9]*\).*/\1/p' | head -n 1)
    [[ -n $map ]] || die "cannot find the map of the XDP program on $1 (prog id '$prog')"
    echo "$map"
}

# SYN-ACKs the sink counted, summed over CPUs.
sink_count() {
    bpftool -j map lookup id "$SINK_MAP" key 0 0 0 0 | python3 -c '
import json, sys
v = json.load(sys.stdin)
vals = v.get("formatted", v).get("values", v.get("values", []))
print(sum(int(x["value"]) if not isinstance(x["value"], list) else int.from_bytes(bytes(int(b, 16) for b in x["value"]), "little") for x in vals))'
}

build_lab() {
    RUN_NO=$((RUN_NO + 1))
    NS_CLI=sg-bench-cli-$TAG-$RUN_NO
    NS_GW=sg-bench-gw-$TAG-$RUN_NO
    NS_SRV=sg-bench-srv-$TAG-$RUN_NO
    # The gateway's veths carry run-unique names (7 chars, so "napi/IF-" fits the
    # 15-character kthread name) so that their NAPI kthreads can be found by name;
    # the client's and the server's veths too (the server's is threaded in "own").
    CLI=cl$((TAG % 100000))
    GWC=gc$((TAG % 100000))
    GWS=gs$((TAG % 100000))
    SRV=sv$((TAG % 100000))
    local ns
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
        new_ns "$ns"
    done
    # veth pairs created inside the namespaces: nothing ever appears in the root ns.
    ip -n "$NS_CLI" link add "$CLI" mtu 1500 type veth peer name "$GWC" mtu 1500 netns "$NS_GW"
    ip -n "$NS_SRV" link add "$SRV" mtu 1500 type veth peer name "$GWS" mtu 1500 netns "$NS_GW"
    # Same offloads for every variant (synguard would turn these off itself).
    offloads_off "$NS_CLI" "$CLI"
    offloads_off "$NS_GW" "$GWC"
    offloads_off "$NS_GW" "$GWS"
    offloads_off "$NS_SRV" "$SRV"
    ip -n "$NS_CLI" addr add "$CLIENT_V4/24" dev "$CLI"
    ip -n "$NS_SRV" addr add "$SERVER_V4/24" dev "$SRV"
    # A frame sent with XDP_TX (synguard's XDP path) reaches the peer veth only
    # when the peer runs an XDP program itself: drivers/net/veth.c hands XDP
    # frames to the peer's NAPI, which exists only while the peer has a program
    # (with GRO alone the lab saw zero SYN-ACKs; with this no-op, all). So both end
    # hosts' veths run bpf/xdp_pass.o in every variant, the same conditions for
    # all; a real NIC needs nothing of the kind. The gateway's veths get it too
    # (gwc: except when synguard attaches its own program): a veth without a
    # program or GRO has no NAPI, so threaded NAPI could not move its receive
    # work to CPU 1, and every variant should pay the same per-frame XDP cost.
    # The client's veth runs bpf/bench_synack_sink.o instead: an XDP program as
    # well, which counts the SYN-ACKs to the spoofed sources and drops them
    # before an skb is built (their receive work would otherwise run on the
    # gateway's CPU; a real client network takes them off its hands).
    ip -n "$NS_CLI" link set dev "$CLI" xdpdrv obj "$SINK_OBJ" sec xdp
    SINK_MAP=$(xdp_map_id "$CLI")
    GEN_IF=$CLI
    if [[ $GEN == hop ]]; then
        # The generator's own veth pair (see -g): trafgen on gen0, gen1 redirects
        # to the client veth. Both stay inside the client namespace.
        GEN_IF=gen0
        ip -n "$NS_CLI" link add gen0 mtu 1500 type veth peer name gen1 mtu 1500
        offloads_off "$NS_CLI" gen0
        offloads_off "$NS_CLI" gen1
        ip -n "$NS_CLI" link set dev gen1 xdpdrv obj "$REDIRECT_OBJ" sec xdp
        local ifindex
        ifindex=$(nsx "$NS_CLI" cat "/sys/class/net/$CLI/ifindex")
        bpftool map update id "$(xdp_map_id gen1)" key 0 0 0 0 value \
            $((ifindex & 255)) $(((ifindex >> 8) & 255)) $(((ifindex >> 16) & 255)) $((ifindex >> 24))
        ip -n "$NS_CLI" link set gen1 up
        ip -n "$NS_CLI" link set gen0 up
    fi
    xdp_pass_on "$NS_SRV" "$SRV"
    xdp_pass_on "$NS_GW" "$GWC"
    xdp_pass_on "$NS_GW" "$GWS"
    ip -n "$NS_GW" link set "$GWC" up
    ip -n "$NS_GW" link set "$GWS" up
    ip -n "$NS_CLI" link set "$CLI" up
    ip -n "$NS_SRV" link set "$SRV" up
    # The server answers the spoofed sources through the client's MAC (kernel
    # variant); the client's sink program counts and drops those SYN-ACKs.
    ip -n "$NS_SRV" route add "$SPOOF_NET" via "$CLIENT_V4" dev "$SRV"
    # SYNs offered, counted where trafgen sends them.
    nsx "$NS_CLI" nft -f - <<EOF
table netdev sgbench {
    counter syns {}
    chain out {
        type filter hook egress device "$GEN_IF" priority 0; policy accept;
        ip saddr $SPOOF_NET tcp flags & (syn | ack | rst | fin) == syn counter name syns
    }
}
EOF
}

gw_synguard() { # XDP_MODE CPUS
    local mode=$1 cpus=$2 cfg=$TMPD/synguard-$RUN_NO.toml
    cat >"$cfg" <<EOF
[interfaces]
client = "$GWC"
server = "$GWS"
[protect]
services = ["$SERVER_V4:$PORT"]
[syn_queue]
syncookies = "always"
[metrics]
listen = "$METRICS"
[control]
socket = "off"
[io]
xdp = "$mode"
EOF
    start_bg synguard "$NS_GW" "$cpus" "$BIN" run --config "$cfg"
    SG_PID=$BG_PID
    local i
    for i in $(seq 1 50); do
        sleep 0.1
        kill -0 "$SG_PID" 2>/dev/null || return 1
        [[ $(metric synguard_syn_received_total) == "?" ]] || return 0
    done
    log "warning: synguard's metrics did not answer within 5 s"
    return 0
}

gw_setup() { # VARIANT PLACEMENT
    local variant=$1 placement=$2 cpus=0 pid
    [[ $placement == shared ]] || cpus=1
    if [[ $placement == own ]]; then
        # Threaded NAPI can only be switched on while the veth has NAPI (a program
        # attached); the setting survives detach and re-attach.
        nsx "$NS_GW" sh -c "echo 1 > /sys/class/net/$GWC/threaded && echo 1 > /sys/class/net/$GWS/threaded"
        # The server's veth too: for the "kernel" variant the protection is the
        # server kernel's receive work.
        nsx "$NS_SRV" sh -c "echo 1 > /sys/class/net/$SRV/threaded"
    fi
    NOTE=
    case $variant in
    xdp)
        # synguard attaches its own program to both ports; xdp_pass held them
        # only for NAPI (threaded NAPI, set above, survives the swap).
        ip -n "$NS_GW" link set dev "$GWC" xdpdrv off
        ip -n "$NS_GW" link set dev "$GWS" xdpdrv off
        if ! gw_synguard native "$cpus"; then
            NOTE="native XDP refused ($(grep -m1 -i 'error' "$RUN_LOG.synguard.log" | cut -c1-200 || true)); generic used"
            log "$NOTE"
            mv "$RUN_LOG.synguard.log" "$RUN_LOG.synguard-native.log"
            gw_synguard generic "$cpus" || die "synguard with xdp = generic did not start: $(tail -n 3 "$RUN_LOG.synguard.log")"
        fi
        ;;
    afpacket)
        gw_synguard off "$cpus" || die "synguard did not start: $(tail -n 3 "$RUN_LOG.synguard.log")"
        ;;
    synproxy)
        gw_synproxy "$NS_GW" "$GWC" "$GWS" "$CLIENT_V4" "$SERVER_V4" "$GWC_V4" "$GWS_V4" "$PORT" "$SPOOF_NET"
        ;;
    kernel)
        gw_bridge "$NS_GW" "$GWC" "$GWS"
        nsx "$NS_SRV" sysctl -qw net.ipv4.tcp_syncookies=2
        ;;
    esac
    NAPI_PINNED=
    if [[ $placement == own ]]; then
        local n=0 ifc
        for ifc in "$GWC" "$GWS" "$SRV"; do
            for pid in $(napi_pids "$ifc"); do
                taskset -pc 1 "$pid" >/dev/null
                # SCHED_FIFO, as a packet core's NAPI threads are run: under the
                # default policy the gateway's kthread was woken 23k times a
                # second and sometimes ran too late, so the veth ring (256
                # frames) overflowed with CPU 1 only 45% busy (4-7% of the SYNs
                # lost; with FIFO 0.05%). The same for every variant; the
                # server's kthread too, or the kernel variant's work, left to
                # ksoftirqd, starved behind the gateway's (0.8% answered).
                chrt -f -p 50 "$pid"
                n=$((n + 1))
            done
        done
        NAPI_PINNED=$n
        [[ $n -ge 3 ]] || log "warning: found $n NAPI kthreads (gateway, server) to pin, expected 3"
        # The client veth's NAPI stays unthreaded: its receive work (taking in the
        # SYN-ACKs, counting and dropping them) runs as softirq right after the
        # gateway's poll that sent them, on CPU 1, the same for every variant.
        # Threaded and pinned to CPU 0 beside the generator it lost SYN-ACKs at
        # its 256-frame ring while its kthread waited to be woken (measured: 90k/s
        # XDP_TX errors on the gateway veth with CPU 0 only 63% busy).
    fi
}

run_one() { # VARIANT PLACEMENT
    local variant=$1 placement=$2 srv_cpus=0
    [[ $placement == shared ]] || srv_cpus=1
    RUN_LOG=$LOGDIR/$placement-$variant
    log "--- $placement / $variant"
    build_lab
    gw_setup "$variant" "$placement"
    start_bg server "$NS_SRV" "$srv_cpus" python3 -c "$PY_SERVER" "$SERVER_V4" "$PORT"
    sleep 0.5
    # ARP through the gateway, then one connect to prove the path works.
    nsx "$NS_CLI" ping -c 2 -i 0.2 -W 2 "$SERVER_V4" >/dev/null 2>&1 || log "warning: ping $SERVER_V4 failed"
    nsx "$NS_SRV" ping -c 1 -W 2 "$CLIENT_V4" >/dev/null 2>&1 || true
    local pre
    pre=$(nsx "$NS_CLI" timeout 15 python3 -c "$PY_CLIENT" "$SERVER_V4" "$PORT" 1 0)
    [[ $pre == "ok 1 "* ]] || log "warning: connect before the flood failed ($pre)"
    local dmac smac
    dmac=$(ip -n "$NS_CLI" neigh show "$SERVER_V4" dev "$CLI" | grep -oE 'lladdr [0-9a-f:]+' | awk '{print $2}' || true)
    [[ -n $dmac ]] || die "no neighbour entry for $SERVER_V4 in $NS_CLI"
    smac=$(mac_of "$NS_CLI" "$CLI")
    local cfg=$TMPD/trafgen-$RUN_NO.cfg
    # 32 spoofed sources 198.18.3.0-31 in turn (lab rule: never outside 198.18.0.0/15),
    # random source port and ISN, MSS option; checksums recomputed per packet.
    cat >"$cfg" <<EOF
{ eth(da=$dmac, sa=$smac),
  ipv4(sa=198.18.3.0, sa[3]=dinc(0, 31), da=$SERVER_V4, ttl=64, df),
  tcp(sp=drnd(1024, 65535), dp=$PORT, seq=drnd(), syn, win=64240, doff=6),
  0x02, 0x04, 0x05, 0xb4 }
EOF
    local total_s=$((DURATION + 3)) count rate_args=()
    if [[ $RATE -gt 0 ]]; then
        count=$((RATE * total_s))
        rate_args=(-b "${RATE}pps")
    else
        count=$((2000000 * total_s))
    fi
    # One trafgen process (-P 1) on CPU 0; bounded by -n and by timeout. Through the
    # qdisc layer (noqueue on veth, so no queue) so that the egress counter sees
    # every SYN: veth's own tx counters are not a reliable offered count once its
    # peer's ring overflows.
    start_bg trafgen "$NS_CLI" 0 timeout -s INT -k 2 "$total_s" \
        env LD_PRELOAD="$SHIM" trafgen -o "$GEN_IF" -i "$cfg" -P 1 --no-sock-mem --qdisc-path -n "$count" "${rate_args[@]}"
    local tg=$BG_PID
    sleep 1
    local t1 tx1 dr1 sa1 t2 tx2 dr2 sa2 sg1=? sg2=?
    read_counters() {
        local st=/sys/class/net/$CLI/statistics
        # One exec, so the three readings are microseconds apart.
        nsx "$NS_CLI" sh -c "date +%s.%N; cat $st/tx_dropped; nft list counter netdev sgbench syns" |
            awk '/packets/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1); next } NF == 1 && $1 ~ /^[0-9.]+$/ { print }' | tr '\n' ' '
        sink_count
    }
    cpu_busy() { # "busy idle" jiffies per CPU, CPU 0 and 1
        awk '$1 == "cpu0" || $1 == "cpu1" { b = $2 + $3 + $4 + $7 + $8 + $9; printf "%d %d ", b, $5 + $6 }' /proc/stat
    }
    local c1 c2
    c1=$(cpu_busy)
    read -r t1 dr1 tx1 sa1 <<<"$(read_counters)"
    [[ $variant == xdp || $variant == afpacket ]] && sg1=$(metric synguard_kernel_drops_total)
    start_bg client "$NS_CLI" 0 python3 -c "$PY_CLIENT" "$SERVER_V4" "$PORT" "$CONNECTS" "$(awk -v d="$DURATION" 'BEGIN { print d - 0.5 }')"
    local cl=$BG_PID
    sleep "$DURATION"
    read -r t2 dr2 tx2 sa2 <<<"$(read_counters)"
    c2=$(cpu_busy)
    local busy busy1
    busy=$(echo "$c1 $c2" | awk '{ printf "cpu0 %d%% busy, cpu1 %d%% busy", 100 * ($5 - $1) / ($5 - $1 + $6 - $2 + 0.001), 100 * ($7 - $3) / ($7 - $3 + $8 - $4 + 0.001) }')
    busy1=$(echo "$c1 $c2" | awk '{ printf "%.4f", ($7 - $3) / ($7 - $3 + $8 - $4 + 0.001) }')
    [[ $variant == xdp || $variant == afpacket ]] && sg2=$(metric synguard_kernel_drops_total)
    wait "$cl" 2>/dev/null || true
    wait "$tg" 2>/dev/null || true
    local legit
    legit=$(tail -n 1 "$RUN_LOG.client.log")
    [[ $legit == ok* ]] || legit="ok 0 - -"
    local xdpmode=
    if [[ $variant == xdp ]]; then
        xdpmode=$(nsx "$NS_GW" python3 -c '
import sys, urllib.request
b = urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=3).read().decode()
print(",".join(l.split("\"")[1] for l in b.splitlines() if l.startswith("synguard_xdp_mode{") and l.endswith(" 1")))
' "$METRICS" 2>/dev/null || echo "?")
    fi
    local row
    row=$(awk -v t1="$t1" -v t2="$t2" -v tx="$((tx2 - tx1))" -v sa="$((sa2 - sa1))" \
        'BEGIN { d = t2 - t1; printf "%d %d", tx / d, sa / d }')
    # shellcheck disable=SC2086 # legit is "ok N p50 p99"
    set -- $legit
    local cpu1_ns=-
    if [[ $placement == own ]]; then
        cpu1_ns=$(awk -v b="$busy1" -v t1="$t1" -v t2="$t2" -v sa="$((sa2 - sa1))" \
            'BEGIN { r = sa / (t2 - t1); if (r > 0) printf "%d", b * 1e9 / r; else print "-" }')
    fi
    RESULTS+=("$placement $variant $row $2 $3 $4 $cpu1_ns")
    local extra=" $busy;"
    [[ $sg1 == "?" || $sg2 == "?" ]] || extra+=" synguard_kernel_drops=+$((sg2 - sg1))"
    [[ -z $xdpmode ]] || extra+=" xdp_mode=$xdpmode"
    [[ -z $NAPI_PINNED ]] || extra+=" napi_kthreads_on_cpu1=$NAPI_PINNED"
    [[ -z $NOTE ]] || extra+=" note: $NOTE"
    log "$placement/$variant: offered/s, synack/s = $row; legit $2/$CONNECTS p50 $3 p99 $4 ms; $CLI tx_dropped (gateway ring full) +$((dr2 - dr1));$extra"
    teardown
}

# --- main ---------------------------------------------------------------------
take_lab_lock
log "kernel $(uname -r), $NCPU CPUs, window ${DURATION}s, rate ${RATE:-0} (0 = as fast as trafgen goes), $CONNECTS connects, logs $LOGDIR"
RESULTS=()
for p in "${PLACEMENT_LIST[@]}"; do
    for v in "${VARIANT_LIST[@]}"; do
        run_one "$v" "$p"
    done
done

echo
echo "SYN flood, $(date -u +%Y-%m-%d), kernel $(uname -r), $NCPU CPUs; ${DURATION}s window, 32 sources, $CONNECTS legitimate connects per run"
printf '%-9s %-9s %10s %10s %10s %9s %8s %8s %8s %8s\n' placement variant offered/s synack/s xSYNPROXY answered legit p50_ms p99_ms cpu1_ns
for r in "${RESULTS[@]}"; do
    read -r pl va off sa ok p50 p99 cpu1 <<<"$r"
    ref=
    for q in "${RESULTS[@]}"; do
        read -r qpl qva _ qsa _ <<<"$q"
        [[ $qpl == "$pl" && $qva == synproxy ]] && ref=$qsa
    done
    ratio=-
    [[ -z $ref || $ref -eq 0 ]] || ratio=$(awk -v a="$sa" -v b="$ref" 'BEGIN { printf "%.2fx", a / b }')
    share=$(awk -v a="$sa" -v b="$off" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }')
    printf '%-9s %-9s %10s %10s %10s %9s %8s %8s %8s %8s\n' "$pl" "$va" "$off" "$sa" "$ratio" "$share" "$ok/$CONNECTS" "$p50" "$p99" "$cpu1"
done
