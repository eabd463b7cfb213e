#!/usr/bin/env bash
# deploy/lab/lab.sh — builds and tears down the three-namespace synguard lab
# (client | gateway | server) by hand, starts the Python test peer and the gateway,
# and prints how to use them. The Rust integration tests never call it: they build
# the same topology themselves (tests/common/lab.rs); keep the two in step.
#
# Lab rules (design.md section 6): namespaces only, linked only to each other, never
# to the root namespace; addresses only from 198.18.0.0/15 and 2001:db8::/32.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: lab.sh [-n NAME] COMMAND [ARGS]

Namespaces: sg-cli-NAME, sg-gw-NAME, sg-srv-NAME. NAME comes from -n, else from
$LAB, else "demo". For up/server/down/demo/status/metrics a trailing NAME
argument is accepted too (lab.sh up mylab).

Commands:
  up                 create the namespaces, veth pairs, addresses (fails
                     if the lab already exists; run down first)
                       client  sg-cli-NAME  cli0  198.18.0.1/24  2001:db8::1/64
                       gateway sg-gw-NAME   gwc (client side), gws (server side),
                                            no addresses, IPv6 disabled
                       server  sg-srv-NAME  srv0  198.18.0.2/24  2001:db8::2/64
  server             start deploy/lab/testpeer.py in the server namespace on TCP 8080
                     (protected) and 8081 (unprotected), UDP echo on 9000, v4 + v6
  gateway [ARGS...]  start synguard in the gateway namespace:
                       synguard run --client-iface gwc --server-iface gws
                         --protect 198.18.0.2:8080 --protect [2001:db8::2]:8080
                         --metrics-listen 127.0.0.1:9150 ARGS...
                     binary: $SYNGUARD_BIN, else target/release/synguard.
                     SYNGUARD_LAB_STANDIN=bridge: plain Linux bridge br0 instead.
  metrics            print the gateway's /metrics (scraped inside the gateway ns)
  status             show namespaces, interfaces and started processes
  down               kill what this script started (pidfiles), delete the namespaces
                     and /run/synguard-lab/NAME; idempotent
  demo               up + server + gateway, then print how to connect

Files: /run/synguard-lab/NAME/{server,gateway}.{pid,log}
EOF
}

die() {
    echo "lab.sh: error: $*" >&2
    exit 1
}

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)

LAB_NAME=${LAB:-demo}
if [[ ${1:-} == "-n" ]]; then
    [[ $# -ge 2 ]] || die "-n needs a NAME"
    LAB_NAME=$2
    shift 2
fi
if [[ $# -lt 1 ]]; then
    usage >&2
    exit 2
fi
CMD=$1
shift
case $CMD in
up | server | down | demo | status | metrics)
    if [[ $# -ge 1 ]]; then
        LAB_NAME=$1
        shift
    fi
    [[ $# -eq 0 ]] || die "$CMD takes no further arguments"
    ;;
esac
[[ $LAB_NAME =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad lab name '$LAB_NAME' (letters, digits, _ . - ; max 40)"

NS_CLI="sg-cli-$LAB_NAME"
NS_GW="sg-gw-$LAB_NAME"
NS_SRV="sg-srv-$LAB_NAME"
RUN_DIR="/run/synguard-lab/$LAB_NAME"

CLIENT_V4=198.18.0.1
SERVER_V4=198.18.0.2
CLIENT_V6=2001:db8::1
SERVER_V6=2001:db8::2
PROTECTED_PORT=8080
UNPROTECTED_PORT=8081
UDP_ECHO_PORT=9000
METRICS_LISTEN=127.0.0.1:9150

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, veth, nftables): sudo $0 $CMD"
}

# shellcheck source=deploy/lab/tools.sh
. "$SCRIPT_DIR/tools.sh"
# Installs what is missing (Debian packages), or dies naming it.
need_tools() {
    ensure_tools "$@" || die "cannot go on without: $*"
}

ns_exists() {
    [[ -e "/run/netns/$1" ]]
}

# Run a command inside a namespace.
nsx() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

offloads_off() {
    local ns=$1 dev=$2
    # Partial checksums and GSO/GRO super-frames would reach AF_PACKET otherwise.
    nsx "$ns" ethtool -K "$dev" rx off tx off tso off gso off gro off sg off >/dev/null 2>&1 ||
        nsx "$ns" ethtool -K "$dev" rx off tx off tso off gso off gro off sg off
}

cmd_up() {
    need_root
    need_tools ip ethtool sysctl
    local ns
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
        ns_exists "$ns" && die "namespace $ns already exists (lab.sh down $LAB_NAME first)"
    done
    mkdir -p "$RUN_DIR"
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
        ip netns add "$ns"
        nsx "$ns" ip link set lo up
    done
    # Gateway kernel stays silent: no addresses, no IPv6 (no RS/MLD/DAD frames).
    nsx "$NS_GW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    for ns in "$NS_CLI" "$NS_SRV"; do
        nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    done
    # veth pairs are created inside the namespaces: nothing ever appears in the root ns.
    ip -n "$NS_CLI" link add cli0 mtu 1500 type veth peer name gwc mtu 1500 netns "$NS_GW"
    ip -n "$NS_SRV" link add srv0 mtu 1500 type veth peer name gws mtu 1500 netns "$NS_GW"
    offloads_off "$NS_CLI" cli0
    offloads_off "$NS_GW" gwc
    offloads_off "$NS_GW" gws
    offloads_off "$NS_SRV" srv0
    ip -n "$NS_CLI" addr add "$CLIENT_V4/24" dev cli0
    ip -n "$NS_CLI" addr add "$CLIENT_V6/64" dev cli0 nodad
    ip -n "$NS_SRV" addr add "$SERVER_V4/24" dev srv0
    ip -n "$NS_SRV" addr add "$SERVER_V6/64" dev srv0 nodad
    ip -n "$NS_GW" link set gwc up
    ip -n "$NS_GW" link set gws up
    ip -n "$NS_CLI" link set cli0 up
    ip -n "$NS_SRV" link set srv0 up
    # The gateway's XDP fast path answers SYNs with XDP_TX; such a frame
    # reaches a veth peer only when the peer runs an XDP program itself
    # (drivers/net/veth.c), so both end hosts run one that passes everything.
    # A real NIC needs nothing of the kind.
    ip -n "$NS_CLI" link set dev cli0 xdpdrv obj "$REPO_ROOT/bpf/xdp_pass.o" sec xdp
    ip -n "$NS_SRV" link set dev srv0 xdpdrv obj "$REPO_ROOT/bpf/xdp_pass.o" sec xdp
    echo "lab '$LAB_NAME' is up:"
    echo "  $NS_CLI  cli0  $CLIENT_V4/24 $CLIENT_V6/64  <-veth->  gwc  (cli0, srv0: xdp_pass.o)"
    echo "  $NS_GW   gwc, gws  (no addresses, IPv6 disabled, offloads off)"
    echo "  $NS_SRV  srv0  $SERVER_V4/24 $SERVER_V6/64  <-veth->  gws"
    echo "  nothing is connected to the root namespace; run dir $RUN_DIR"
}

# Start a background process inside a namespace, record its pid.
start_bg() {
    local name=$1 ns=$2
    shift 2
    local pidfile="$RUN_DIR/$name.pid" log="$RUN_DIR/$name.log"
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "$name already running (pid $(cat "$pidfile"))"
    fi
    # `ip netns exec` execs the command, so $! is the process itself.
    nohup ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    sleep 1
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "--- $log ---" >&2
        tail -n 30 "$log" >&2 || true
        rm -f "$pidfile"
        die "$name exited right after start"
    fi
    echo "$name started in $ns (pid $(cat "$pidfile"), log $log)"
}

need_lab() {
    local ns
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
        ns_exists "$ns" || die "namespace $ns missing (lab.sh up $LAB_NAME first)"
    done
    mkdir -p "$RUN_DIR"
}

cmd_server() {
    need_root
    need_tools ip python3
    need_lab
    start_bg server "$NS_SRV" python3 "$SCRIPT_DIR/testpeer.py" server \
        --bind "$SERVER_V4" --bind "$SERVER_V6" \
        --port "$PROTECTED_PORT" --port "$UNPROTECTED_PORT" --udp-port "$UDP_ECHO_PORT"
}

cmd_gateway() {
    need_root
    need_tools ip
    need_lab
    if [[ ${SYNGUARD_LAB_STANDIN:-} == bridge ]]; then
        ip -n "$NS_GW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
        ip -n "$NS_GW" link set gwc master br0
        ip -n "$NS_GW" link set gws master br0
        ip -n "$NS_GW" link set br0 up
        echo "STAND-IN: Linux bridge br0 (gwc + gws) in $NS_GW instead of synguard; no metrics"
        return 0
    fi
    [[ -z ${SYNGUARD_LAB_STANDIN:-} ]] || die "unknown SYNGUARD_LAB_STANDIN='$SYNGUARD_LAB_STANDIN' (only 'bridge')"
    local bin=${SYNGUARD_BIN:-$REPO_ROOT/target/release/synguard}
    [[ -x $bin ]] || die "synguard binary not found at $bin (cargo build --release, or set SYNGUARD_BIN)"
    start_bg gateway "$NS_GW" "$bin" run \
        --client-iface gwc --server-iface gws \
        --protect "$SERVER_V4:$PROTECTED_PORT" --protect "[$SERVER_V6]:$PROTECTED_PORT" \
        --metrics-listen "$METRICS_LISTEN" "$@"
}

cmd_metrics() {
    need_root
    need_tools ip python3
    ns_exists "$NS_GW" || die "namespace $NS_GW missing"
    nsx "$NS_GW" python3 -c '
import sys, urllib.request
try:
    print(urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5).read().decode(), end="")
except OSError as e:
    sys.exit("lab.sh: error: scraping http://%s/metrics in the gateway namespace: %s" % (sys.argv[1], e))
' "$METRICS_LISTEN"
}

# Kill a process we started, by the pid in its pidfile.
stop_pidfile() {
    local name=$1 pidfile="$RUN_DIR/$1.pid" pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$name (pid $pid) ignored SIGTERM for 3 s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

cmd_down() {
    need_root
    local ns
    if [[ -d $RUN_DIR ]]; then
        stop_pidfile gateway
        stop_pidfile server
    fi
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
        if ns_exists "$ns"; then
            ip netns del "$ns"
            echo "deleted namespace $ns"
        fi
    done
    rm -rf "$RUN_DIR"
    echo "lab '$LAB_NAME' is down"
}

cmd_status() {
    local ns name
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
        if ns_exists "$ns"; then
            echo "== $ns"
            ip -n "$ns" -brief addr
        else
            echo "== $ns (absent)"
        fi
    done
    for name in server gateway; do
        if [[ -f $RUN_DIR/$name.pid ]] && kill -0 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null; then
            echo "$name: running, pid $(cat "$RUN_DIR/$name.pid")"
        else
            echo "$name: not running"
        fi
    done
}

cmd_demo() {
    need_root
    # Everything the lines printed below use, so each of them works as shown.
    need_tools ip ethtool sysctl python3 ping timeout hping3 curl
    cmd_up
    cmd_server
    cmd_gateway
    local peer="$SCRIPT_DIR/testpeer.py"
    cat <<EOF

Lab '$LAB_NAME' is running. Try (as root):
  ip netns exec $NS_CLI python3 $peer client connect $SERVER_V4 $PROTECTED_PORT
  ip netns exec $NS_CLI python3 $peer client upload   $SERVER_V4 $PROTECTED_PORT 1000000
  ip netns exec $NS_CLI python3 $peer client download $SERVER_V6 $PROTECTED_PORT 1000000
  ip netns exec $NS_CLI python3 $peer client connect $SERVER_V4 $UNPROTECTED_PORT   # bridged, not proxied
  ip netns exec $NS_CLI ping -c 3 $SERVER_V4
  # a bounded SYN flood from a spoofed lab address (never --rand-source):
  ip netns exec $NS_CLI timeout -s INT 12 hping3 -q -S -a 198.18.1.1 -p $PROTECTED_PORT -c 5000 -i u200 $SERVER_V4
Metrics:
  $0 -n $LAB_NAME metrics
  ip netns exec $NS_GW curl -s http://$METRICS_LISTEN/metrics
Logs: $RUN_DIR/gateway.log $RUN_DIR/server.log
Tear down: $0 -n $LAB_NAME down
EOF
}

case $CMD in
up) cmd_up ;;
server) cmd_server ;;
gateway) cmd_gateway "$@" ;;
metrics) cmd_metrics ;;
status) cmd_status ;;
down) cmd_down ;;
demo) cmd_demo ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
