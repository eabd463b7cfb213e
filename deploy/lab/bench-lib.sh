# deploy/lab/bench-lib.sh — helpers shared by the lab benchmarks (bench-synflood.sh,
# bench-throughput.sh); sourced, never run. The caller sets BENCH_NAME, TMPD (its
# temporary directory), RUN_LOG (log file prefix of the current run) and
# XDP_PASS_OBJ, and keeps NSLIST (namespaces it created) and PIDS (processes it
# started). Lab rules (design.md section 6): only namespaces the caller creates,
# linked only to each other; only processes the caller started are ended, by PID.

die() {
    echo "$BENCH_NAME: error: $*" >&2
    exit 1
}
log() {
    echo "bench: $*" >&2
}

NSLIST=()
PIDS=()

# Root, the tools named (installed from Debian's packages when missing:
# tools.sh) and bpf/xdp_pass.o (sets XDP_PASS_OBJ); dies naming what is missing.
require() { # REPO_ROOT TOOL...
    local repo=$1
    shift
    [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, veth, XDP, nftables)"
    # shellcheck source=deploy/lab/tools.sh
    . "$repo/deploy/lab/tools.sh"
    ensure_tools "$@" || die "cannot go on without: $*"
    XDP_PASS_OBJ=$repo/bpf/xdp_pass.o
    [[ -f $XDP_PASS_OBJ ]] || die "$XDP_PASS_OBJ missing (bpf/build.sh builds it)"
}

# The synguard binary, when one of the variants runs it (xdp, afpacket).
require_synguard() { # BIN VARIANT...
    local bin=$1 v
    shift
    for v in "$@"; do
        if [[ $v == xdp || $v == afpacket ]]; then
            [[ -x $bin ]] || die "synguard binary not found at $bin: build it first (cargo build --release) or pass -b / SYNGUARD_BIN"
        fi
    done
}

kill_pid() { # PID: TERM, then KILL after 3 s; only PIDs this script started
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Ends the processes and deletes the namespaces of the current run.
teardown() {
    local pid ns
    for pid in "${PIDS[@]}"; do
        kill_pid "$pid"
    done
    PIDS=()
    for ns in "${NSLIST[@]}"; do
        [[ -e /run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null || true
    done
    NSLIST=()
}

# Teardown and the temporary directory on exit, failure or a signal.
install_cleanup() {
    cleanup() {
        trap - EXIT INT TERM HUP
        teardown
        rm -rf "$TMPD"
    }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
}

# Holds /tmp/synguard-lab.lock until exit, so no lab test or other bench overlaps.
take_lab_lock() {
    exec 9>/tmp/synguard-lab.lock
    if ! flock -n 9; then
        log "waiting for /tmp/synguard-lab.lock (the lab tests hold it)"
        flock 9
    fi
}

nsx() { # NS CMD...
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# Background process in a namespace on a CPU list; `ip netns exec` and taskset
# exec, so $! is the process itself. Sets BG_PID.
start_bg() { # NAME NS CPUS CMD...
    local name=$1 ns=$2 cpus=$3
    shift 3
    ip netns exec "$ns" taskset -c "$cpus" "$@" >"$RUN_LOG.$name.log" 2>&1 </dev/null &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# A new namespace with lo up, IPv6 off (no RS/MLD/DAD frames in the counts) and
# rp_filter off; registered for teardown.
new_ns() { # NS
    [[ ! -e /run/netns/$1 ]] || die "namespace $1 already exists"
    NSLIST+=("$1")
    ip netns add "$1"
    nsx "$1" ip link set lo up
    nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    nsx "$1" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

mac_of() { # NS IF
    ip -n "$1" -o link show "$2" | grep -oE 'link/ether [0-9a-f:]+' | awk '{print $2}'
}

offloads_off() { # NS IF
    nsx "$1" ethtool -K "$2" gro off gso off tso off tx off rx off sg off >/dev/null 2>&1 ||
        nsx "$1" ethtool -K "$2" gro off gso off tso off tx off rx off sg off
}

xdp_pass_on() { # NS IF
    ip -n "$1" link set dev "$2" xdpdrv obj "$XDP_PASS_OBJ" sec xdp
}

# nftables SYNPROXY on the gateway namespace NS, a router between the client
# veth GWC and the server veth GWS that keeps the end hosts' /24 (proxy ARP,
# host routes): SYNs to SERVER:PORT untracked and answered by SYNPROXY (mss 1460
# wscale 7 timestamp sack-perm), invalid packets dropped. EXTRA_ROUTE (optional):
# one more "NET via CLIENT" route toward the client side.
gw_synproxy() { # NS GWC GWS CLIENT_V4 SERVER_V4 GWC_V4 GWS_V4 PORT [EXTRA_NET]
    local ns=$1 gwc=$2 gws=$3 client=$4 server=$5 gwc_v4=$6 gws_v4=$7 port=$8 extra=${9:-}
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 \
        net.ipv4.conf.all.proxy_arp=1 net.ipv4.conf.default.proxy_arp=1 \
        "net.ipv4.conf.$gwc.proxy_arp=1" "net.ipv4.conf.$gws.proxy_arp=1" \
        net.ipv4.tcp_syncookies=2 net.ipv4.tcp_timestamps=1
    ip -n "$ns" addr add "$gwc_v4/32" dev "$gwc"
    ip -n "$ns" addr add "$gws_v4/32" dev "$gws"
    ip -n "$ns" route add "$client/32" dev "$gwc"
    ip -n "$ns" route add "$server/32" dev "$gws"
    [[ -z $extra ]] || ip -n "$ns" route add "$extra" via "$client" dev "$gwc"
    nsx "$ns" nft -f - <<NFT
table ip sgbench {
    chain notrack_syns {
        type filter hook prerouting priority raw; policy accept;
        iifname "$gwc" ip daddr $server tcp dport $port tcp flags & (fin | syn | rst | ack) == syn notrack
    }
    chain proxy {
        type filter hook forward priority filter; policy accept;
        iifname "$gwc" ip daddr $server tcp dport $port ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
        ct state invalid drop
    }
}
NFT
    # ACKs of unknown connections must stay "invalid" so SYNPROXY checks them.
    nsx "$ns" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
}

# A plain Linux bridge br0 over the gateway namespace's two veths.
gw_bridge() { # NS GWC GWS
    ip -n "$1" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$1" link set "$2" master br0
    ip -n "$1" link set "$3" master br0
    ip -n "$1" link set br0 up
}
