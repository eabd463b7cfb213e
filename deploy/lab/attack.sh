#!/usr/bin/env bash
# deploy/lab/attack.sh — named, bounded attack scenarios against the synguard lab
# (deploy/lab/lab.sh, or a lab built by tests/common/lab.rs: pass its suffix as -n).
# Independent of synguard itself: it only sends packets from the client namespace
# and reports what it offered. Every scenario is bounded in time (timeout) and count
# (-c / --limit), and every spoofed source comes from 198.18.0.0/15 (hping3 -a,
# tcprewrite --srcipmap). Never --rand-source (design.md section 6).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: attack.sh [-n NAME] SCENARIO [--rate PPS] [--duration SECONDS] [--port PORT]
                 [--pcap FILE]

Runs SCENARIO from the client namespace sg-cli-NAME (NAME from -n, $LAB, or
"demo") against the server 198.18.0.2, then prints one line:
  scenario=S packets=N frames=F seconds=T offered_pps=N/T [recorded=R] [senders=K]
packets: what hping3 / tcpreplay report having sent (hping3 stops early once it
has seen as many replies as it was asked to send, so an answered flood may send
a little less than RATE x DURATION); frames: Ethernet frames on the wire (an
ip-fragments packet is 3 frames); seconds: how long the flood really ran, from
cli0's transmit counter sampled every 0.1 s (tcpreplay: its own report), so
offered_pps is what reached the wire even when one hping3 cannot keep up with
RATE; recorded: SYNs sent while recording the pcap (pcap-replay only); senders:
hping3 processes that shared RATE (hping3 scenarios only).
Defaults: --rate 20000 (total, 1..200000), --duration 10 (1..60), --port 8080.

Scenarios (spoofed sources 198.18.1.1-16 unless noted, RATE split among them):
  syn-flood                SYNs
  syn-flood-single-source  SYNs from the one source 198.18.1.1, sent by 4
                           hping3 processes (one alone offered 5-11k pps on
                           the 2-core VM)
  ack-flood                ACKs with random sequence and acknowledgment numbers
                           (each source its own random ACK number)
  rst-flood                RSTs
  fin-flood                FINs (FIN alone, no ACK)
  syn-with-payload         SYNs carrying 200 bytes of data
  syn-fin                  SYN+FIN
  null                     no flags at all
  xmas                     FIN+PSH+URG
  ip-fragments             SYNs with 64 bytes of data split into 3 IP fragments
                           of at most 32 bytes (hping3 -f -m 32)
  pcap-replay              replays FILE (--pcap; default
                           /run/synguard-lab/NAME/attack.pcap) with tcpreplay at
                           RATE. If FILE does not exist it is recorded first:
                           2000 SYNs from 198.18.2.1-16 to PORT, captured with
                           tcpdump as they leave the client (the gateway must be
                           running: the client ARPs the server through it).
                           Before the replay the capture is rewritten to this
                           lab (tcprewrite): IPv4 TCP only, sources mapped into
                           198.18.2.0/24 (low 8 bits kept), destination
                           198.18.0.2, MACs of this lab's cli0 and srv0,
                           checksums fixed; ports are kept. A capture from
                           elsewhere therefore replays as a flood from lab
                           addresses (use tcprewrite --portmap for its ports).
EOF
}

die() {
    echo "attack.sh: error: $*" >&2
    exit 1
}

LAB_NAME=${LAB:-demo}
if [[ ${1:-} == "-n" ]]; then
    [[ $# -ge 2 ]] || die "-n needs a NAME"
    LAB_NAME=$2
    shift 2
fi
[[ $# -ge 1 ]] || {
    usage >&2
    exit 2
}
case $1 in -h | --help)
    usage
    exit 0
    ;;
esac
SCENARIO=$1
shift
RATE=20000
DURATION=10
PORT=8080
PCAP=
while [[ $# -gt 0 ]]; do
    case $1 in
    --rate)
        RATE=${2:?--rate needs a value}
        shift 2
        ;;
    --duration)
        DURATION=${2:?--duration needs a value}
        shift 2
        ;;
    --port)
        PORT=${2:?--port needs a value}
        shift 2
        ;;
    --pcap)
        PCAP=${2:?--pcap needs a file}
        shift 2
        ;;
    *) die "unknown argument $1" ;;
    esac
done
[[ $LAB_NAME =~ ^[A-Za-z0-9_.-]{1,60}$ ]] || die "bad lab name '$LAB_NAME'"
[[ $RATE =~ ^[0-9]+$ && $RATE -ge 1 && $RATE -le 200000 ]] || die "--rate must be 1..200000"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 60 ]] || die "--duration must be 1..60"
[[ $PORT =~ ^[0-9]+$ && $PORT -ge 1 && $PORT -le 65535 ]] || die "--port must be 1..65535"

CLI=sg-cli-$LAB_NAME
SRV=sg-srv-$LAB_NAME
CLI_IF=cli0
SRV_IF=srv0
TARGET=198.18.0.2
RUN_DIR=/run/synguard-lab/$LAB_NAME
[[ -n $PCAP ]] || PCAP=$RUN_DIR/attack.pcap
[[ $(id -u) -eq 0 ]] || die "must run as root"
ip netns list | awk '{print $1}' | grep -qxF -- "$CLI" ||
    die "namespace $CLI missing (deploy/lab/lab.sh up first)"
# shellcheck source=deploy/lab/tools.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/tools.sh"
ensure_tools hping3 timeout || die "cannot go on without hping3 and timeout"

# Stopping the script (Ctrl-C, SIGTERM) stops what it started: timeout(1) puts
# itself into its own process group, so the group signal does not reach it.
SAMPLER=
SAMPLES=
TMPD=
cleanup() {
    [[ -z $SAMPLER ]] || kill "$SAMPLER" 2>/dev/null || true
    [[ -z $SAMPLES ]] || rm -f "$SAMPLES"
    [[ -z $TMPD ]] || rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Lab rule: spoofed sources only from 198.18.0.0/15.
check_source() {
    [[ $1 =~ ^198\.(18|19)\.[0-9]+\.[0-9]+$ ]] || die "source $1 is outside 198.18.0.0/15"
}

# hpings NSRC NET ARGS...: one bounded hping3 per source NET.1 .. NET.NSRC, RATE
# split among them, all at once. Prints the packets the hping3s report having
# sent. Per-process extra arguments: the function hping_extra (if defined) is
# called with the source index.
hpings() {
    local nsrc=$1 net=$2
    shift 2
    local per=$((RATE / (nsrc * HPINGS_PER_SOURCE)))
    ((per >= 1)) || per=1
    local interval=$((1000000 / per))
    ((interval >= 1)) || interval=1
    local count=$((per * DURATION))
    local pids=() logs=() i src extra
    for ((i = 1; i <= nsrc; i++)); do
        src=$net.$i
        check_source "$src"
        extra=()
        if [[ $(type -t hping_extra) == function ]]; then
            read -r -a extra <<<"$(hping_extra "$i")"
        fi
        for ((j = 1; j <= HPINGS_PER_SOURCE; j++)); do
            logs+=("$(mktemp)")
            # hping3 prints its summary on SIGINT; -c bounds the count, timeout the time.
            # hping3 also stops once it has seen -c replies, and it sees the replies
            # to every process of its source: so -c is the whole source's count.
            ip netns exec "$CLI" timeout -s INT -k 3 $((DURATION + 2)) \
                hping3 -q "$@" "${extra[@]}" -a "$src" -p "$PORT" -i "u$interval" \
                -c $((count * HPINGS_PER_SOURCE)) "$TARGET" \
                >"${logs[-1]}" 2>&1 &
            pids+=($!)
        done
    done
    # shellcheck disable=SC2064 # the pids are known now
    trap "kill ${pids[*]} 2>/dev/null; rm -f ${logs[*]}; exit 143" INT TERM HUP
    local total=0 sent
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || true
        sent=$(grep -oE '^[0-9]+ packets (transmitted|tramitted)' "${logs[$i]}" | grep -oE '^[0-9]+' || echo 0)
        total=$((total + sent))
        rm -f "${logs[$i]}"
    done
    echo "$total"
}

# The flood's real duration, from the client interface's transmit counter sampled
# every 0.1 s inside the namespace (hping3 lingers after its last packet, and one
# hping3 cannot always keep up with RATE): the time between the first and the last
# 0.1 s interval carrying at least 10% of RATE.
tx_sampler_start() {
    SAMPLES=$(mktemp)
    # shellcheck disable=SC2016 # expanded by the inner bash
    ip netns exec "$CLI" timeout $((DURATION + 60)) bash -c \
        'while :; do echo "$(date +%s.%N) $(cat /sys/class/net/$0/statistics/tx_packets)"; sleep 0.1; done' \
        "$CLI_IF" >"$SAMPLES" 2>/dev/null &
    SAMPLER=$!
}

tx_sampler_stop() {
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=
    local thr=$((RATE / 100))
    ((thr >= 1)) || thr=1
    SECONDS_USED=$(awk -v thr="$thr" '
        NF == 2 && pt != "" { if ($2 - pc >= thr) { if (first == "") first = pt; last = $1 } }
        NF == 2 { pt = $1; pc = $2 }
        END { if (first != "" && last - first >= 0.1) printf "%.1f", last - first; else print "" }' "$SAMPLES")
    rm -f "$SAMPLES"
    [[ -n $SECONDS_USED ]] || SECONDS_USED=$DURATION
}

# ack-flood: each process its own random ACK number; hping3 randomizes SEQ.
ack_extra() {
    echo "-L $((RANDOM * 65536 + RANDOM))"
}

mac_of() { # NS IFACE
    ip -n "$1" -o link show "$2" | grep -oE 'link/ether [0-9a-f:]+' | awk '{print $2}'
}

record_pcap() {
    ensure_tools tcpdump || die "cannot record without tcpdump"
    mkdir -p "$(dirname -- "$PCAP")"
    # 2000 SYNs from 198.18.2.1-16 (each with its own source ports) as they leave
    # the client namespace: lab addresses only.
    ip netns exec "$CLI" timeout 30 tcpdump -q -i "$CLI_IF" -w "$PCAP" \
        "tcp[tcpflags] & tcp-syn != 0 and src net 198.18.2.0/24" >/dev/null 2>&1 &
    local dump=$!
    sleep 1
    local r=$RATE d=$DURATION
    RATE=2000 DURATION=1
    RECORDED=$(hpings 16 198.18.2 -S)
    RATE=$r DURATION=$d
    sleep 0.5
    kill -INT "$dump" 2>/dev/null || true
    wait "$dump" || true
    [[ -s $PCAP ]] || die "recording $PCAP failed"
}

pcap_replay() {
    ensure_tools tcpreplay tcprewrite tcpdump || die "cannot replay without tcpreplay, tcprewrite and tcpdump"
    RECORDED=0
    [[ -s $PCAP ]] || record_pcap
    # Rewrite to this lab: its MACs (the capture may come from another lab or
    # machine), IPv4 TCP only, sources into 198.18.2.0/24, destination the server.
    ip netns exec "$CLI" ping -c 1 -W 2 "$TARGET" >/dev/null 2>&1 || true
    local smac dmac
    smac=$(mac_of "$CLI" "$CLI_IF")
    dmac=$(ip -n "$CLI" neigh show "$TARGET" dev "$CLI_IF" | grep -oE 'lladdr [0-9a-f:]+' | awk '{print $2}' || true)
    [[ -n $dmac ]] || dmac=$(mac_of "$SRV" "$SRV_IF" 2>/dev/null || true)
    [[ -n $smac && -n $dmac ]] || die "cannot find the lab's MAC addresses"
    TMPD=$(mktemp -d)
    local tmp=$TMPD
    tcpdump -r "$PCAP" -w "$tmp/tcp.pcap" 'ip and tcp' 2>/dev/null || die "cannot read $PCAP"
    tcprewrite --infile="$tmp/tcp.pcap" --outfile="$tmp/lab.pcap" \
        --srcipmap=0.0.0.0/0:198.18.2.0/24 --dstipmap=0.0.0.0/0:"$TARGET"/32 \
        --enet-smac="$smac" --enet-dmac="$dmac" --fixcsum ||
        die "tcprewrite failed"
    local n foreign
    n=$(tcpdump -nr "$tmp/lab.pcap" 2>/dev/null | wc -l)
    ((n > 0)) || die "$PCAP has no IPv4 TCP packets"
    # Lab rule, checked on the file itself: nothing outside 198.18.0.0/15.
    foreign=$(tcpdump -nr "$tmp/lab.pcap" 'not (src net 198.18.0.0/15 and dst net 198.18.0.0/15)' 2>/dev/null | wc -l)
    ((foreign == 0)) || die "rewritten capture still has $foreign packets outside 198.18.0.0/15"
    local out
    out=$(ip netns exec "$CLI" timeout -s INT -k 3 $((DURATION + 5)) \
        tcpreplay -q -i "$CLI_IF" --pps "$RATE" --loop 100000 --limit $((RATE * DURATION)) \
        "$tmp/lab.pcap" 2>&1 || true)
    PACKETS=$(echo "$out" | grep -oE 'Actual: [0-9]+ packets' | grep -oE '[0-9]+' | head -1 || true)
    [[ -n $PACKETS ]] || die "tcpreplay reported nothing: $out"
    FRAMES=$PACKETS
    SECONDS_USED=$(echo "$out" | grep -oE 'sent in [0-9.]+ seconds' | grep -oE '[0-9.]+' | head -1 || true)
    [[ -n $SECONDS_USED ]] || SECONDS_USED=$DURATION
    SECONDS_USED=$(awk -v s="$SECONDS_USED" 'BEGIN { printf "%.1f", s }')
}

run_hpings() { # NSRC ARGS...
    tx_sampler_start
    SENDERS=$(($1 * HPINGS_PER_SOURCE))
    PACKETS=$(hpings "$1" 198.18.1 "${@:2}")
    FRAMES=$PACKETS
    tx_sampler_stop
}

RECORDED=
# hping3 processes per source (each counts its source ports up from its own
# random base); SENDERS: all of them, reported for the tests' bounds.
HPINGS_PER_SOURCE=1
SENDERS=
case $SCENARIO in
syn-flood) run_hpings 16 -S ;;
syn-flood-single-source)
    # One hping3 alone offered 5-11k of the 20k pps on the 2-core VM.
    HPINGS_PER_SOURCE=4
    run_hpings 1 -S
    ;;
ack-flood)
    hping_extra() { ack_extra; }
    run_hpings 16 -A
    ;;
rst-flood) run_hpings 16 -R ;;
fin-flood) run_hpings 16 -F ;;
syn-with-payload) run_hpings 16 -S -d 200 ;;
syn-fin) run_hpings 16 -S -F ;;
null) run_hpings 16 ;;
xmas) run_hpings 16 -F -P -U ;;
ip-fragments)
    # 20 TCP header + 64 data bytes in fragments of at most 32: 3 frames a packet.
    run_hpings 16 -S -f -m 32 -d 64
    FRAMES=$((PACKETS * 3))
    ;;
pcap-replay) pcap_replay ;;
*) die "unknown scenario $SCENARIO (see --help)" ;;
esac
pps=$(awk -v p="$PACKETS" -v s="$SECONDS_USED" 'BEGIN { printf "%d", p / s }')
echo "scenario=$SCENARIO packets=$PACKETS frames=$FRAMES seconds=$SECONDS_USED offered_pps=$pps${RECORDED:+ recorded=$RECORDED}${SENDERS:+ senders=$SENDERS}"
