#!/usr/bin/env bash
# deploy/fleet/router.sh — the router side of a synguard fleet: one router in front
# of (or behind) N synguard instances spreads flows over them with ECMP, keeps both
# directions of a flow on the same instance together with the router on the other
# side, takes a dead instance out (liveness) and drains one on purpose. It acts only
# on the kernel of the machine (or network namespace) it runs in: plain iproute2
# nexthop groups and routes, sysctls, one nftables table and one ip rule. It never
# starts or stops synguard and never touches the other router: run it on both, with
# the same SEED, BUCKETS and member numbers (README "Running several gateways").
#
# Why plain kernel routes and not FRR or BIRD: the fleet needs a *resilient* nexthop
# group (net/ipv4/nexthop.c, `type resilient`), which moves only the flows of a
# member that leaves; a hash-threshold multipath route, which is what Debian 12's
# FRR 8.4 and BIRD 2.0 install, rehashes every flow when the member count changes,
# so the survivors' flows would land on instances that have no state for them.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: router.sh -c CONF COMMAND [ARG]

CONF is a bash file of assignments (deploy/fleet/router-client.conf is a worked
example):
  SEED=N          net.ipv4.fib_multipath_hash_seed, the same on both routers
  BUCKETS=N       resilient group buckets (default 64), the same on both routers
  ROUTES4="P..."  IPv4 prefixes reached through the fleet (e.g. the servers')
  ROUTES6="P..."  IPv6 prefixes likewise (may be empty)
  MEMBER_<n>="V4 V6 DEV"  instance n (1..99): the far router's address on the link
                  through it (IPv4, IPv6 or -), and the local device of that link
  FWMARK=0x5347 TABLE=101  mark and routing table of flows born during a drain

Commands:
  setup          sysctls (symmetric L4 hash, seed, forwarding), one nexthop per
                 member, the fleet's groups over all members and their routes, the
                 nft table inet synguard_fleet (conntrack, for drains) and the ip
                 rule; run once at boot, before traffic
  show           the groups' members and each member's bucket count
  remove N       take instance N out of both groups (dead: its buckets move)
  add N          put instance N back into both groups (its buckets return: flows
                 made without it in those buckets move back to it)
  drain N        new flows avoid instance N, flows it carries stay on it
  finish N       end of a drain: instance N out of the groups for good
  watch [-i MS] [-f FAILS]
                 liveness: ping every member's far address through its instance
                 every MS ms (default 200, timeout the same); FAILS (default 3)
                 failed probes in a row -> remove N (never the last member
                 of a group). Runs until killed. ICMP
                 crosses synguard's engine thread (its XDP program never forwards
                 it), so the probe fails as soon as the process stops or stalls,
                 even while its XDP data path still forwards established flows.
                 Never adds a member back: that is `add`, an operator's decision.
EOF
}

die() {
    echo "router.sh: error: $*" >&2
    exit 1
}

CONF=""
if [[ ${1:-} == "-c" ]]; then
    [[ $# -ge 2 ]] || die "-c needs a file"
    CONF=$2
    shift 2
fi
[[ $# -ge 1 && -n $CONF ]] || {
    usage >&2
    exit 2
}
[[ -r $CONF ]] || die "cannot read $CONF"
SEED="" BUCKETS=64 ROUTES4="" ROUTES6="" FWMARK=0x5347 TABLE=101
# shellcheck source=/dev/null
. "$CONF"
[[ $SEED =~ ^[0-9]+$ ]] || die "$CONF: SEED must be a number"
[[ $BUCKETS =~ ^[0-9]+$ && $BUCKETS -ge 2 ]] || die "$CONF: BUCKETS must be a number >= 2"
CMD=$1
shift

# Nexthop ids: member n is 100+n (IPv4) and 200+n (IPv6). Group 10 (IPv4) and 20
# (IPv6) carry every flow; 11 and 21 carry only flows born during a drain. The two of
# a family always get the same member changes in the same order, except that a
# drain removes its member from the second one first: a resilient group's buckets
# are a function of its member history (with idle_timer 0 a bucket moves at once),
# so after `finish` both are identical again and no flow moves.
G4=10 G6=20 G4NEW=11 G6NEW=21

members() { # all configured member numbers
    compgen -v MEMBER_ | sed 's/^MEMBER_//' | sort -n
}
member_field() { # N FIELD(1..3)
    local var="MEMBER_$1"
    [[ -n ${!var:-} ]] || die "no MEMBER_$1 in $CONF"
    awk -v f="$2" '{print $f}' <<<"${!var}"
}
has_v6() { [[ -n $ROUTES6 ]]; }

group_members() { # GROUP_ID -> member numbers, one per line (nothing if no group)
    ip nexthop show id "$1" 2>/dev/null |
        sed -n 's/.* group \([0-9/]*\) .*/\1/p' | tr '/' '\n' | sed '/^$/d' |
        while read -r id; do echo $((id % 100)); done
}

set_group() { # GROUP_ID BASE(100|200) MEMBER...
    local id=$1 base=$2 spec="" n op=add
    shift 2
    for n in "$@"; do spec+="${spec:+/}$((base + n))"; done
    [[ -n $spec ]] || die "group $id would be empty: a fleet needs one instance at least"
    ip nexthop show id "$id" >/dev/null 2>&1 && op=replace
    ip nexthop "$op" id "$id" group "$spec" type resilient buckets "$BUCKETS" idle_timer 0
}

apply() { # GROUP_V4 GROUP_V6 MEMBER...
    local g4=$1 g6=$2
    shift 2
    set_group "$g4" 100 "$@"
    has_v6 && set_group "$g6" 200 "$@"
    return 0
}

without() { # N MEMBER... -> the members but N
    local n=$1 m
    shift
    for m in "$@"; do [[ $m == "$n" ]] || echo "$m"; done
}

buckets() { # GROUP_ID -> "INDEX NEXTHOP_ID" per bucket, in index order
    ip nexthop bucket show id "$1" |
        sed -n 's/.* index \([0-9]*\) .* nhid \([0-9]*\).*/\1 \2/p' | sort -n
}

drain_rule_handle() {
    nft -a list chain inet synguard_fleet pre 2>/dev/null |
        sed -n 's/.*comment "synguard-drain".* # handle \([0-9]*\)$/\1/p'
}

cmd_setup() {
    local all n
    mapfile -t all < <(members)
    [[ ${#all[@]} -ge 1 ]] || die "$CONF names no MEMBER_<n>"
    # Policy 3 hashes the fields below; the kernel orders the flow's addresses and
    # ports before hashing (flow_hash_from_keys in net/core/flow_dissector.c), so
    # both directions of a flow get the same hash, here and on the other router
    # with the same seed. Fields 0x37: addresses, protocol, ports.
    sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=0x0037 \
        net.ipv6.fib_multipath_hash_policy=3 net.ipv6.fib_multipath_hash_fields=0x0037 \
        net.ipv4.fib_multipath_hash_seed="$SEED"
    for n in "${all[@]}"; do
        [[ $n =~ ^[0-9]{1,2}$ && $n -ge 1 ]] || die "member number $n: 1..99"
        ip nexthop replace id $((100 + n)) via "$(member_field "$n" 1)" dev "$(member_field "$n" 3)"
        if has_v6; then
            [[ $(member_field "$n" 2) != - ]] || die "MEMBER_$n has no IPv6 next hop but ROUTES6 is set"
            ip nexthop replace id $((200 + n)) via "$(member_field "$n" 2)" dev "$(member_field "$n" 3)"
        fi
    done
    apply $G4 $G6 "${all[@]}"
    apply $G4NEW $G6NEW "${all[@]}"
    for p in $ROUTES4; do
        ip route replace "$p" nhid $G4
        ip route replace "$p" nhid $G4NEW table "$TABLE"
    done
    for p in $ROUTES6; do
        ip -6 route replace "$p" nhid $G6
        ip -6 route replace "$p" nhid $G6NEW table "$TABLE"
    done
    # Conntrack from the start, so that every flow a drain finds already has its
    # mark (0); a flow it first saw mid-stream would count as new.
    nft -f - <<'EOF'
table inet synguard_fleet
delete table inet synguard_fleet
table inet synguard_fleet {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        meta mark set ct mark
    }
}
EOF
    ip rule show | grep -q "fwmark $FWMARK lookup $TABLE" ||
        ip rule add fwmark "$FWMARK" lookup "$TABLE" priority 100
    ip -6 rule show | grep -q "fwmark $FWMARK lookup $TABLE" ||
        ip -6 rule add fwmark "$FWMARK" lookup "$TABLE" priority 100
    echo "fleet router: members ${all[*]}, seed $SEED, $BUCKETS buckets"
}

cmd_show() {
    local g n
    for g in $G4 $G4NEW; do
        printf 'group %s:' "$g"
        for n in $(group_members "$g"); do
            printf ' %s(%s buckets)' "$n" "$(buckets "$g" | grep -c " $((100 + n))$")"
        done
        echo
    done
}

cmd_remove() { # N: out of both groups
    local n=$1
    mapfile -t cur < <(group_members $G4)
    mapfile -t new < <(group_members $G4NEW)
    # shellcheck disable=SC2046
    apply $G4 $G6 $(without "$n" "${cur[@]}")
    # shellcheck disable=SC2046
    apply $G4NEW $G6NEW $(without "$n" "${new[@]}")
}

cmd_add() { # N: back into both groups
    local n=$1
    member_field "$n" 3 >/dev/null
    mapfile -t cur < <(group_members $G4)
    mapfile -t new < <(group_members $G4NEW)
    # shellcheck disable=SC2046
    apply $G4 $G6 $(without "$n" "${cur[@]}") "$n"
    # shellcheck disable=SC2046
    apply $G4NEW $G6NEW $(without "$n" "${new[@]}") "$n"
}

cmd_drain() { # N: new flows elsewhere
    local n=$1
    mapfile -t new < <(group_members $G4NEW)
    # shellcheck disable=SC2046
    apply $G4NEW $G6NEW $(without "$n" "${new[@]}")
    if [[ -z $(drain_rule_handle) ]]; then
        nft insert rule inet synguard_fleet pre ct state new ct mark set "$FWMARK" \
            comment '"synguard-drain"'
    fi
}

cmd_finish() { # N: out for good, groups identical again
    local n=$1
    mapfile -t cur < <(group_members $G4)
    # shellcheck disable=SC2046
    apply $G4 $G6 $(without "$n" "${cur[@]}")
    local h
    if [[ $(buckets $G4) == "$(buckets $G4NEW)" ]]; then
        h=$(drain_rule_handle)
        [[ -z $h ]] || nft delete rule inet synguard_fleet pre handle "$h"
    else
        echo "router.sh: groups $G4 and $G4NEW still differ (another drain?): drain rule kept" >&2
    fi
}

cmd_watch() {
    local interval=200 fails=3
    while [[ $# -gt 0 ]]; do
        case $1 in
        -i) interval=$2; shift 2 ;;
        -f) fails=$2; shift 2 ;;
        *) die "watch: unknown option $1" ;;
        esac
    done
    [[ $interval =~ ^[0-9]+$ && $interval -ge 50 ]] || die "watch: -i MS, 50 or more"
    [[ $fails =~ ^[0-9]+$ && $fails -ge 1 ]] || die "watch: -f FAILS, 1 or more"
    local -A missed=()
    local wait n
    wait=$(printf '%d.%03d' $((interval / 1000)) $((interval % 1000)))
    echo "watch: probing every ${interval} ms, $fails misses take a member out"
    while true; do
        for n in $(printf '%s\n' $(group_members $G4) $(group_members $G4NEW) | sort -un); do
            if ping -n -q -c 1 -W "$wait" "$(member_field "$n" 1)" >/dev/null 2>&1; then
                missed[$n]=0
                continue
            fi
            missed[$n]=$((${missed[$n]:-0} + 1))
            if [[ ${missed[$n]} -ge $fails ]]; then
                missed[$n]=0
                if [[ $(group_members $G4 | grep -cvx "$n") -eq 0 ||
                    $(group_members $G4NEW | grep -cvx "$n") -eq 0 ]]; then
                    # Without it the group would be empty: keep the last one.
                    echo "watch: $(date +%s.%N) member $n missed $fails probes: kept, it is the last"
                    continue
                fi
                echo "watch: $(date +%s.%N) member $n missed $fails probes: removed"
                cmd_remove "$n"
            fi
        done
        sleep "$wait"
    done
}

case $CMD in
setup) cmd_setup ;;
show) cmd_show ;;
remove | add | drain | finish)
    [[ $# -eq 1 && $1 =~ ^[0-9]+$ ]] || die "$CMD needs a member number"
    "cmd_$CMD" "$1"
    ;;
watch) cmd_watch "$@" ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
