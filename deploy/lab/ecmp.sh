#!/usr/bin/env bash
# deploy/lab/ecmp.sh — a fleet of N synguard instances between two routers that
# spread flows over them with ECMP, built in network namespaces (the router sandwich
# of README "Running several gateways"; tests/lab_ecmp.rs runs it):
#
#   sg-ecli-NAME          sg-ertc-NAME                               sg-erts-NAME          sg-esrv-NAME
#   cli0 198.18.0.1 ----- rc0 198.18.0.254                           rs0 198.18.1.254 ---- srv0 198.18.1.2
#   2001:db8::1           rcI 198.18.1I.1 -- [sg-egwI-NAME: gwc synguard gws] -- rsI 198.18.1I.2
#                             2001:db8:1I::1                                          2001:db8:1I::2
#
# for I = 1..N. Both routers are configured by deploy/fleet/router.sh (the same tool
# a real fleet's routers run) with the same seed: a resilient nexthop group over the
# N links, the symmetric L4 hash, conntrack for drains. The gateway namespaces hold
# their two interfaces and nothing else: start synguard in each with
# --client-iface gwc --server-iface gws.
#
# Lab rules (design.md section 6): namespaces only, linked only to each other, never
# to the root namespace; addresses only from 198.18.0.0/15 and 2001:db8::/32.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: ecmp.sh [-n NAME] up N | down | router c|s ARGS...

  up N              build the namespaces for N gateways (2..9), both routers (set up
                    with deploy/fleet/router.sh) and the two hosts
  down              delete every namespace of NAME and its files (stop what you
                    started in them first, by PID); idempotent
  router R ARGS     run deploy/fleet/router.sh ARGS in router R (c: client side,
                    s: server side) with its configuration, e.g. `router c show`,
                    `router s drain 2`, `router c watch`

NAME comes from -n, else $LAB, else "ecmp". Files: /run/synguard-lab/ecmp-NAME/.
EOF
}

die() {
    echo "ecmp.sh: error: $*" >&2
    exit 1
}

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)
ROUTER="$REPO_ROOT/deploy/fleet/router.sh"

LAB_NAME=${LAB:-ecmp}
if [[ ${1:-} == "-n" ]]; then
    [[ $# -ge 2 ]] || die "-n needs a NAME"
    LAB_NAME=$2
    shift 2
fi
[[ $# -ge 1 ]] || {
    usage >&2
    exit 2
}
[[ $LAB_NAME =~ ^[A-Za-z0-9_.-]{1,24}$ ]] || die "bad lab name '$LAB_NAME' (letters, digits, _ . -; max 24)"
CMD=$1
shift

NS_CLI="sg-ecli-$LAB_NAME"
NS_RC="sg-ertc-$LAB_NAME"
NS_RS="sg-erts-$LAB_NAME"
NS_SRV="sg-esrv-$LAB_NAME"
ns_gw() { echo "sg-egw$1-$LAB_NAME"; }
RUN_DIR="/run/synguard-lab/ecmp-$LAB_NAME"
# The same on both routers: the hash and its seed decide the member.
HASH_SEED=20261207

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

veth() { # veth NS_A IF_A NS_B IF_B: offloads off (no GRO super-frames at a gateway)
    local ns dev ns_dev
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    for ns_dev in "$1:$2" "$3:$4"; do
        ns=${ns_dev%%:*} dev=${ns_dev#*:}
        in_ns "$ns" ethtool -K "$dev" rx off tx off tso off gso off gro off sg off >/dev/null
        in_ns "$ns" ip link set "$dev" up
    done
}

host() { # NS IF V4/24 V6/64 GW4 GW6
    in_ns "$1" ip addr add "$3" dev "$2"
    in_ns "$1" ip addr add "$4" dev "$2" nodad
    in_ns "$1" ip route add default via "$5"
    in_ns "$1" ip -6 route add default via "$6"
}

write_conf() { # FILE ROUTES4 ROUTES6 SIDE(1: client router, 2: server router) N
    local i far
    {
        echo "# $1: written by deploy/lab/ecmp.sh up"
        echo "SEED=$HASH_SEED"
        echo "BUCKETS=64"
        echo "ROUTES4=\"$2\""
        echo "ROUTES6=\"$3\""
        for ((i = 1; i <= $5; i++)); do
            far=$((3 - $4)) # the other router's host number on the link
            if [[ $4 == 1 ]]; then
                echo "MEMBER_$i=\"198.18.1$i.$far 2001:db8:1$i::$far rc$i\""
            else
                echo "MEMBER_$i=\"198.18.1$i.$far 2001:db8:1$i::$far rs$i\""
            fi
        done
    } >"$1"
}

cmd_up() {
    local n=$1 i gw ns
    [[ $n =~ ^[2-9]$ ]] || die "N must be 2..9"
    # shellcheck source=deploy/lab/tools.sh
    . "$SCRIPT_DIR/tools.sh"
    ensure_tools ip ethtool sysctl nft ping || die "cannot go on without the tools above"
    ip netns list | grep -qE -- "-$LAB_NAME( |$)" && die "lab $LAB_NAME exists; run down first"
    mkdir -p "$RUN_DIR"
    for ns in "$NS_CLI" "$NS_RC" "$NS_RS" "$NS_SRV"; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
        # No duplicate address detection, for link-local addresses either: a
        # tentative one delays the first neighbour solicitation, and a lab's first
        # IPv6 packet was lost in 3 of 8 builds (with a Linux bridge in place of
        # synguard too).
        in_ns "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
            net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    done
    veth "$NS_CLI" cli0 "$NS_RC" rc0
    host "$NS_CLI" cli0 198.18.0.1/24 2001:db8::1/64 198.18.0.254 2001:db8::fe
    in_ns "$NS_RC" ip addr add 198.18.0.254/24 dev rc0
    in_ns "$NS_RC" ip addr add 2001:db8::fe/64 dev rc0 nodad
    veth "$NS_SRV" srv0 "$NS_RS" rs0
    host "$NS_SRV" srv0 198.18.1.2/24 2001:db8:1::2/64 198.18.1.254 2001:db8:1::fe
    in_ns "$NS_RS" ip addr add 198.18.1.254/24 dev rs0
    in_ns "$NS_RS" ip addr add 2001:db8:1::fe/64 dev rs0 nodad
    for ((i = 1; i <= n; i++)); do
        gw=$(ns_gw "$i")
        ip netns add "$gw"
        in_ns "$gw" ip link set lo up
        # The gateway's own kernel stays silent: no addresses, no IPv6.
        in_ns "$gw" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        veth "$NS_RC" "rc$i" "$gw" gwc
        veth "$gw" gws "$NS_RS" "rs$i"
        in_ns "$NS_RC" ip addr add "198.18.1$i.1/24" dev "rc$i"
        in_ns "$NS_RC" ip addr add "2001:db8:1$i::1/64" dev "rc$i" nodad
        in_ns "$NS_RS" ip addr add "198.18.1$i.2/24" dev "rs$i"
        in_ns "$NS_RS" ip addr add "2001:db8:1$i::2/64" dev "rs$i" nodad
        # A frame a gateway sends with XDP_TX reaches the veth peer only while the
        # peer runs an XDP program (drivers/net/veth.c; tests/common/lab.rs).
        ip -n "$NS_RC" link set dev "rc$i" xdpdrv obj "$REPO_ROOT/bpf/xdp_pass.o" sec xdp
        ip -n "$NS_RS" link set dev "rs$i" xdpdrv obj "$REPO_ROOT/bpf/xdp_pass.o" sec xdp
    done
    write_conf "$RUN_DIR/router-c.conf" 198.18.1.0/24 2001:db8:1::/64 1 "$n"
    write_conf "$RUN_DIR/router-s.conf" 198.18.0.0/24 2001:db8::/64 2 "$n"
    in_ns "$NS_RC" "$ROUTER" -c "$RUN_DIR/router-c.conf" setup
    in_ns "$NS_RS" "$ROUTER" -c "$RUN_DIR/router-s.conf" setup
    echo "ecmp lab $LAB_NAME: $n gateway namespaces ($(for ((i = 1; i <= n; i++)); do ns_gw "$i"; done | tr '\n' ' '))"
}

cmd_down() {
    local ns
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^sg-e(cli|rtc|rts|srv|gw[0-9])-$LAB_NAME$" || true); do
        ip netns del "$ns"
    done
    rm -rf -- "$RUN_DIR"
}

case $CMD in
up)
    [[ $# -eq 1 ]] || die "up needs N"
    cmd_up "$1"
    ;;
down) cmd_down ;;
router)
    [[ $# -ge 2 ]] || die "router needs c or s and a router.sh command"
    case $1 in
    c) ns=$NS_RC conf=$RUN_DIR/router-c.conf ;;
    s) ns=$NS_RS conf=$RUN_DIR/router-s.conf ;;
    *) die "router must be c or s, not '$1'" ;;
    esac
    shift
    exec ip netns exec "$ns" "$ROUTER" -c "$conf" "$@"
    ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
