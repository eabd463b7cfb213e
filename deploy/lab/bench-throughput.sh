#!/usr/bin/env bash
# deploy/lab/bench-throughput.sh — established-flow and connection-rate benchmark:
# iperf3 (one stream, four streams) and ab (a new connection per request) through
# synguard (XDP fast path at its default, and off), a plain Linux bridge and nftables
# SYNPROXY, side by side in one run with the same offloads (issue 10, "Benchmarks"),
# and with no middlebox at all: the ceiling any forwarder can reach on this lab.
# A benchmark, not a timed test: it prints numbers and never fails on them.
#
# Lab rules (design.md section 6): only namespaces this script creates, linked only
# to each other; addresses only from 198.18.0.0/15; every load bounded in time
# (iperf3 -t, ab -n, timeout); ends only what it started, by PID; deletes its
# namespaces on exit, failure or Ctrl-C; holds /tmp/synguard-lab.lock throughout.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench-throughput.sh [-d SECONDS] [-n REQUESTS] [-c CONCURRENCY] [-V LIST]
                           [-N softirq|threaded] [-r ROUNDS] [-b BINARY]
                           [-l DIR] [-h]

Client 198.18.0.1 and server 198.18.0.2 in their own namespaces, the protection in
a third between them; ports 5201 (iperf3) and 8080 (HTTP) protected. Per variant,
in fresh namespaces: iperf3 for SECONDS with one stream and with four, then ab
with REQUESTS requests, CONCURRENCY at a time, each on a new connection
(Connection: close) to a small HTTP responder (C, built here with cc).

Options:
  -d SECONDS     iperf3 duration per run, 2..60 (default 5)
  -n REQUESTS    ab requests, 100..200000 (default 20000)
  -c CONCURRENCY ab concurrency, 1..64 (default 8)
  -V LIST        variants, comma-separated (default all, in this order):
                   bridge    the gateway namespace a plain Linux bridge (the
                             reference: x bridge = 1.00)
                   xdp       synguard, [io] xdp = "auto" (its default)
                   xdp-cookies  the same with [syn_queue] syncookies =
                             "always": every handshake on the path the XDP
                             program completes itself (with "auto" the
                             half-open queue answers SYNs until it
                             overflows, and its handshakes are the engine's)
                   afpacket  synguard, xdp = "off"
                   synproxy  nftables SYNPROXY (gateway an IPv4 router,
                             conntrack), as in bench-synflood.sh
                   direct    no gateway: client and server on one veth pair,
                             the ceiling of every middlebox here (the end
                             hosts' TCP stacks alone)
  -N NAPI        where every veth's NAPI polls run, in every variant:
                   softirq   (default) in softirq context on the CPU that
                             scheduled them, or ksoftirqd there
                   threaded  in a kernel thread per NAPI instance
                             (/sys/class/net/IF/threaded = 1) that the
                             scheduler places on any CPU
  -r ROUNDS      run the variant list ROUNDS times, 1..9 (default 1), each round
                 starting one variant later so drift over the run spreads
                 evenly; every ratio is to the bridge of the same round
  -b BINARY      synguard binary (default $SYNGUARD_BIN, else
                 target/release/synguard)
  -l DIR         keep per-run logs in DIR (default: a temporary directory)
  -h             this help

Same settings for every variant: no CPU pinning; on every veth GRO, GSO, TSO,
checksum offload and scatter-gather off (synguard needs wire-sized frames with
full checksums and turns these off on its own ports anyway, so the others get the
same); the end hosts' veths run bpf/xdp_pass.o (design.md section 8).

Output, one row per variant and round: iperf3 Gbit/s (receiver) with one and four
streams, ab requests/s and its p99 in ms, and each divided by the bridge's of that
round; with more than one round also each ratio's median and range over the rounds. For the
synguard variants the log line also gives, per ab request, the frames the gateway
received, how many of them its XDP programs forwarded, how many reached the
engine in userspace, and how many reports of the program the engine replayed.

Needs root and: ip ethtool nft python3 iperf3 ab (apache2-utils) taskset flock
timeout cc.
EOF
}

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)
BENCH_NAME=bench-throughput.sh
# shellcheck source=deploy/lab/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

DURATION=5
REQUESTS=20000
CONCURRENCY=8
VARIANTS=bridge,xdp,afpacket,synproxy,direct
BIN=${SYNGUARD_BIN:-$REPO_ROOT/target/release/synguard}
LOGDIR=
NAPI=softirq
ROUNDS=1
while getopts ":d:n:c:V:N:r:b:l:h" opt; do
    case $opt in
    d) DURATION=$OPTARG ;;
    n) REQUESTS=$OPTARG ;;
    c) CONCURRENCY=$OPTARG ;;
    V) VARIANTS=$OPTARG ;;
    N) NAPI=$OPTARG ;;
    r) ROUNDS=$OPTARG ;;
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
[[ $REQUESTS =~ ^[0-9]+$ && $REQUESTS -ge 100 && $REQUESTS -le 200000 ]] || die "-n must be 100..200000"
[[ $CONCURRENCY =~ ^[0-9]+$ && $CONCURRENCY -ge 1 && $CONCURRENCY -le 64 ]] || die "-c must be 1..64"
[[ $NAPI == softirq || $NAPI == threaded ]] || die "-N must be softirq or threaded"
[[ $ROUNDS =~ ^[1-9]$ ]] || die "-r must be 1..9"
IFS=, read -r -a VARIANT_LIST <<<"$VARIANTS"
for v in "${VARIANT_LIST[@]}"; do
    case $v in bridge | xdp | xdp-cookies | afpacket | synproxy | direct) ;; *) die "unknown variant '$v' (see -h)" ;; esac
done

require "$REPO_ROOT" ip ethtool nft python3 iperf3 ab taskset flock timeout cc
require_synguard "$BIN" "${VARIANT_LIST[@]}"

CLIENT_V4=198.18.0.1
SERVER_V4=198.18.0.2
GWC_V4=198.18.2.1 # synproxy only: the router's own addresses
GWS_V4=198.18.2.2
IPERF_PORT=5201
HTTP_PORT=8080
METRICS=127.0.0.1:9150 # inside the gateway namespace only
TAG=$$
TMPD=$(mktemp -d /tmp/sg-bench.XXXXXX)
install_cleanup
[[ -n $LOGDIR ]] || LOGDIR=$TMPD/logs
mkdir -p "$LOGDIR"

# The HTTP responder: one process, one connection at a time: reads the request
# head, answers 200 with a 2-byte body and "Connection: close", closes. Enough
# for ab's few concurrent connections; small and the same for every variant.
HTTPD=$TMPD/httpd
cc -O2 -o "$HTTPD" -x c - <<'EOF' || die "cannot build the HTTP responder with cc"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || bind(l, (void *)&a, sizeof a) || listen(l, 4096))
        return 1;
    static const char reply[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    char buf[4096];
    for (;;) {
        int c = accept(l, 0, 0);
        if (c < 0)
            continue;
        size_t got = 0;
        while (got < sizeof buf - 1) {
            ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = 0;
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        if (write(c, reply, sizeof reply - 1) < 0) {
        }
        close(c);
    }
}
EOF

RUN_NO=0
build_lab() { # VARIANT
    RUN_NO=$((RUN_NO + 1))
    NS_CLI=sg-bench-cli-$TAG-$RUN_NO
    NS_GW=sg-bench-gw-$TAG-$RUN_NO
    NS_SRV=sg-bench-srv-$TAG-$RUN_NO
    local ns devs
    if [[ $1 == direct ]]; then
        # One veth pair between the end hosts; everything else as below.
        for ns in "$NS_CLI" "$NS_SRV"; do
            new_ns "$ns"
        done
        ip -n "$NS_CLI" link add cli0 type veth peer name srv0 netns "$NS_SRV"
        devs=("$NS_CLI cli0" "$NS_SRV srv0")
    else
        for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
            new_ns "$ns"
        done
        ip -n "$NS_CLI" link add cli0 type veth peer name gwc netns "$NS_GW"
        ip -n "$NS_SRV" link add srv0 type veth peer name gws netns "$NS_GW"
        devs=("$NS_CLI cli0" "$NS_GW gwc" "$NS_GW gws" "$NS_SRV srv0")
    fi
    local dev
    for dev in "${devs[@]}"; do
        set -- $dev
        offloads_off "$1" "$2"
    done
    ip -n "$NS_CLI" addr add "$CLIENT_V4/24" dev cli0
    ip -n "$NS_SRV" addr add "$SERVER_V4/24" dev srv0
    xdp_pass_on "$NS_CLI" cli0
    xdp_pass_on "$NS_SRV" srv0
    for dev in "${devs[@]}"; do
        set -- $dev
        ip -n "$1" link set "$2" up
    done
    DEVS=("${devs[@]}")
}

# -N threaded, once the variant is set up (a veth has NAPI instances only while
# it runs an XDP program or GRO, drivers/net/veth.c; the kernel refuses the
# switch on one without): sets every veth that has them to threaded NAPI and
# logs which did. The others receive in the sender's backlog, as always.
thread_napi() {
    [[ $NAPI == threaded ]] || return 0
    local dev threaded=()
    for dev in "${DEVS[@]}"; do
        set -- $dev
        if nsx "$1" sh -c "echo 1 > /sys/class/net/$2/threaded" 2>/dev/null; then
            threaded+=("$2")
        fi
    done
    log "threaded NAPI on: ${threaded[*]:-none}"
}

gw_synguard() { # XDP_MODE [SYNCOOKIES]
    local cfg=$TMPD/synguard-$RUN_NO.toml
    cat >"$cfg" <<EOF
[interfaces]
client = "gwc"
server = "gws"
[protect]
services = ["$SERVER_V4:$IPERF_PORT", "$SERVER_V4:$HTTP_PORT"]
[metrics]
listen = "$METRICS"
[control]
socket = "off"
[io]
xdp = "$1"
[syn_queue]
syncookies = "${2:-auto}"
EOF
    start_bg synguard "$NS_GW" 0-1 "$BIN" run --config "$cfg"
    local pid=$BG_PID i
    for i in $(seq 1 50); do
        sleep 0.1
        kill -0 "$pid" 2>/dev/null || die "synguard exited: $(tail -n 3 "$RUN_LOG.synguard.log")"
        nsx "$NS_GW" python3 -c 'import sys, urllib.request; urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=1)' "$METRICS" 2>/dev/null && return 0
    done
    die "synguard's metrics did not answer within 5 s: $(tail -n 3 "$RUN_LOG.synguard.log")"
}

# iperf3 -J receiver rate in Gbit/s.
iperf_gbps() { # STREAMS
    nsx "$NS_CLI" timeout $((DURATION + 15)) iperf3 -c "$SERVER_V4" -p "$IPERF_PORT" -t "$DURATION" -P "$1" -J >"$RUN_LOG.iperf-$1.json" 2>&1 || true
    python3 - "$RUN_LOG.iperf-$1.json" <<'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    print("%.2f" % (j["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception:
    print("-")
PY
}

# ab: "REQ_PER_S P99_MS FAILED"; "aborted - -" when ab gave up (a request got
# no answer within its 10 s, or the whole run exceeded 120 s).
ab_run() {
    nsx "$NS_CLI" timeout 120 ab -q -n "$REQUESTS" -c "$CONCURRENCY" -s 10 "http://$SERVER_V4:$HTTP_PORT/" >"$RUN_LOG.ab.log" 2>&1 || true
    awk '/^Requests per second:/ { r = $4 } /^  99%/ { p = $2 } /^Failed requests:/ { f = $3 } END { if (r == "") print "aborted - -"; else printf "%d %s %s", r, p, f }' "$RUN_LOG.ab.log"
}

# synguard's metrics to $RUN_LOG.metrics-LABEL (empty when they do not answer).
scrape_metrics() { # LABEL
    nsx "$NS_GW" python3 -c '
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=3).read().decode())
' "$METRICS" >"$RUN_LOG.metrics-$1" 2>/dev/null || : >"$RUN_LOG.metrics-$1"
}

# Per ab request (each one connection), from the metrics before and after ab:
# frames the gateway received on its two ports (synguard_frames_total counts
# those its XDP programs handled too), how many of them XDP forwarded, how many
# reached the engine through its sockets (synguard_frames_to_engine_total), and
# the program's reports the engine replayed (a frame the program handled in the
# engine's place, which the engine reads from a ring, not a socket). Says why
# connections cost what they cost.
frames_per_request() { # AB_RESULT
    [[ $1 != aborted* ]] || {
        echo "per request: - (ab aborted)"
        return
    }
    python3 - "$RUN_LOG.metrics-before" "$RUN_LOG.metrics-after" "$REQUESTS" <<'PY'
import sys
def total(path, name, label=""):
    n = 0.0
    for line in open(path):
        if line.startswith(name + "{") and label in line:
            n += float(line.rsplit(" ", 1)[1])
    return n
before, after, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    d = lambda name, label="": total(after, name, label) - total(before, name, label)
    rx = d("synguard_frames_total", 'direction="rx"')
    fwd = d("synguard_xdp_forwarded_frames_total")
    up = d("synguard_frames_to_engine_total")
    replayed = d("synguard_xdp_events_total", 'result="replayed"')
    print("per request: %.1f frames received, %.1f of them forwarded in XDP, %.1f to the engine (userspace); %.1f reports of the program replayed"
          % (rx / requests, fwd / requests, up / requests, replayed / requests))
except (OSError, ValueError, IndexError):
    print("per request: metrics unavailable")
PY
}

RESULTS=()
run_one() { # ROUND VARIANT
    local round=$1 variant=$2
    RUN_LOG=$LOGDIR/r$round.$variant
    log "--- round $round: $variant"
    build_lab "$variant"
    case $variant in
    direct) ;;
    bridge) gw_bridge "$NS_GW" gwc gws ;;
    xdp) gw_synguard auto ;;
    xdp-cookies) gw_synguard auto always ;;
    afpacket) gw_synguard off ;;
    synproxy)
        gw_synproxy "$NS_GW" gwc gws "$CLIENT_V4" "$SERVER_V4" "$GWC_V4" "$GWS_V4" "{ $IPERF_PORT, $HTTP_PORT }"
        ;;
    esac
    thread_napi
    start_bg iperf3 "$NS_SRV" 0-1 iperf3 -s -B "$SERVER_V4" -p "$IPERF_PORT"
    start_bg httpd "$NS_SRV" 0-1 "$HTTPD" "$SERVER_V4" "$HTTP_PORT"
    sleep 0.5
    nsx "$NS_CLI" ping -c 2 -i 0.2 -W 2 "$SERVER_V4" >/dev/null 2>&1 || log "warning: ping $SERVER_V4 failed"
    local one four ab mode= per_request=
    one=$(iperf_gbps 1)
    four=$(iperf_gbps 4)
    [[ $variant == xdp* || $variant == afpacket ]] && scrape_metrics before
    ab=$(ab_run)
    if [[ $variant == xdp* || $variant == afpacket ]]; then
        scrape_metrics after
        per_request=" $(frames_per_request "$ab")"
    fi
    if [[ $variant == xdp* ]]; then
        # auto may have fallen back to off: say which mode ran.
        mode=" xdp_mode=$(awk -F'"' '/^synguard_xdp_mode\{/ && / 1$/ { printf "%s%s", s, $2; s = "," } END { if (s == "") print "?" }' "$RUN_LOG.metrics-after")"
    fi
    log "$variant: iperf3 1 stream $one Gbit/s, 4 streams $four Gbit/s; ab (req/s p99_ms failed) $ab;$mode$per_request"
    RESULTS+=("$round $variant $one $four $ab")
    teardown
}

take_lab_lock
log "kernel $(uname -r), $(nproc) CPUs, iperf3 ${DURATION}s, ab -n $REQUESTS -c $CONCURRENCY, NAPI $NAPI, $ROUNDS round(s), logs $LOGDIR"
for ((round = 1; round <= ROUNDS; round++)); do
    n=${#VARIANT_LIST[@]}
    for ((i = 0; i < n; i++)); do
        run_one "$round" "${VARIANT_LIST[$(((i + round - 1) % n))]}"
    done
done

echo
echo "Throughput, $(date -u +%Y-%m-%d), kernel $(uname -r), $(nproc) CPUs; iperf3 ${DURATION}s, ab -n $REQUESTS -c $CONCURRENCY (new connection per request), NAPI $NAPI"
printf '%s\n' "${RESULTS[@]}" | python3 -c '
import statistics, sys
rows = [l.split() for l in sys.stdin if l.strip()]
order = list(dict.fromkeys(r[1] for r in rows))
def num(v):
    try:
        return float(v)
    except ValueError:
        return None
bridge = {r[0]: r for r in rows if r[1] == "bridge"}
ratios = {}  # (variant, column) -> ratios over rounds
def ratio(r, col):
    a, b = num(r[col]), num(bridge[r[0]][col]) if r[0] in bridge else None
    if a is None or not b:
        return "-"
    ratios.setdefault((r[1], col), []).append(a / b)
    return "%.2fx" % (a / b)
fmt = "%-5s %-11s %8s %8s %9s %8s %8s %8s %7s %7s"
print(fmt % ("round", "variant", "1stream", "xbridge", "4streams", "xbridge", "req/s", "xbridge", "p99_ms", "failed"))
for r in sorted(rows, key=lambda r: (int(r[0]), order.index(r[1]))):
    print(fmt % (r[0], r[1], r[2], ratio(r, 2), r[3], ratio(r, 3), r[4], ratio(r, 4), r[5], r[6]))
if len(bridge) > 1:
    print()
    print("x bridge over %d rounds: median [min-max]" % len(bridge))
    def summary(v, col):
        x = ratios.get((v, col))
        return "%.2fx [%.2f-%.2f]" % (statistics.median(x), min(x), max(x)) if x else "-"
    print("%-11s %20s %20s %20s" % ("variant", "1 stream", "4 streams", "req/s"))
    for v in order:
        print("%-11s %20s %20s %20s" % (v, summary(v, 2), summary(v, 3), summary(v, 4)))
'
