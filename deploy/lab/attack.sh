#!/usr/bin/env bash
# deploy/lab/attack.sh — named, bounded attack scenarios against the synguard lab
# (deploy/lab/lab.sh). Independent of synguard itself: it only sends packets from
# the client namespace and reports what it offered. Every scenario is bounded in
# time (timeout) and count (-c), and every spoofed source comes from
# 198.18.0.0/15 (hping3 -a). Never --rand-source (design.md section 6).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: attack.sh [-n NAME] SCENARIO [--rate PPS] [--duration SECONDS] [--port PORT]

Runs SCENARIO from the client namespace sg-cli-NAME (NAME from -n, $LAB, or
"demo") against the server 198.18.0.2, then prints one line:
  scenario=S packets=N seconds=DURATION offered_pps=N/DURATION
(packets as hping3 / tcpreplay report them; hping3 stops early once it has
seen --rate x --duration replies, so a flood that is answered may send fewer)
Defaults: --rate 20000 (total), --duration 10 (at most 60), --port 8080.

Scenarios:
  syn-flood                SYNs from 16 spoofed sources 198.18.1.1-16
  syn-flood-single-source  SYNs from one spoofed source 198.18.1.1
  ack-flood                ACKs with random sequence and acknowledgment numbers
                           (16 spoofed sources, each its own random ACK number)
  rst-flood                RSTs from 16 spoofed sources
  fin-flood                FINs from 16 spoofed sources
  syn-with-payload         SYNs carrying 200 bytes of data
  syn-fin                  SYN+FIN
  null                     no flags at all
  xmas                     FIN+PSH+URG
  ip-fragments             SYNs split into IP fragments
  pcap-replay              records 2000 spoofed SYNs (198.18.2.x) with tcpdump
                           into /run/synguard-lab/NAME/attack.pcap (once), then
                           replays the capture with tcpreplay at --rate
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
while [[ $# -gt 0 ]]; do
    case $1 in
    --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
    --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    *) die "unknown argument $1" ;;
    esac
done
[[ $RATE =~ ^[0-9]+$ && $RATE -ge 1 && $RATE -le 200000 ]] || die "--rate must be 1..200000"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 60 ]] || die "--duration must be 1..60"
[[ $PORT =~ ^[0-9]+$ && $PORT -ge 1 && $PORT -le 65535 ]] || die "--port must be 1..65535"

CLI=sg-cli-$LAB_NAME
TARGET=198.18.0.2
RUN_DIR=/run/synguard-lab/$LAB_NAME
[[ $(id -u) -eq 0 ]] || die "must run as root"
ip netns list | grep -qw -- "$CLI" || die "namespace $CLI missing (deploy/lab/lab.sh up first)"
for tool in hping3 timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# Lab rule: spoofed sources only from 198.18.0.0/15.
check_source() {
    [[ $1 =~ ^198\.(18|19)\.[0-9]+\.[0-9]+$ ]] || die "source $1 is outside 198.18.0.0/15"
}

# flood SOURCES FLAGS...: one bounded hping3 per source, RATE split among them.
# Prints the number of packets hping3 reports having sent.
flood() {
    local nsrc=$1
    shift
    local per=$((RATE / nsrc))
    ((per >= 1)) || per=1
    local interval=$((1000000 / per))
    ((interval >= 1)) || interval=1
    local count=$((per * DURATION))
    local pids=() logs=() i src
    for ((i = 1; i <= nsrc; i++)); do
        src=198.18.1.$i
        check_source "$src"
        logs+=("$(mktemp)")
        # hping3 prints its summary on SIGINT; -c bounds the count, timeout the time.
        ip netns exec "$CLI" timeout -s INT -k 3 $((DURATION + 2)) \
            hping3 -q "$@" -a "$src" -p "$PORT" -i "u$interval" -c "$count" "$TARGET" \
            >"${logs[-1]}" 2>&1 &
        pids+=($!)
    done
    local total=0 sent
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || true
        sent=$(grep -oE '^[0-9]+ packets transmitted' "${logs[$i]}" | grep -oE '^[0-9]+' || echo 0)
        total=$((total + sent))
        rm -f "${logs[$i]}"
    done
    echo "$total"
}

# ack-flood: each process its own random ACK number; hping3 randomizes SEQ.
ack_flood() {
    local nsrc=16 per=$((RATE / 16)) pids=() logs=() i src
    ((per >= 1)) || per=1
    local interval=$((1000000 / per)) count=$((per * DURATION))
    for ((i = 1; i <= nsrc; i++)); do
        src=198.18.1.$i
        check_source "$src"
        logs+=("$(mktemp)")
        ip netns exec "$CLI" timeout -s INT -k 3 $((DURATION + 2)) \
            hping3 -q -A -L $((RANDOM * 65536 + RANDOM)) -a "$src" -p "$PORT" \
            -i "u$interval" -c "$count" "$TARGET" >"${logs[-1]}" 2>&1 &
        pids+=($!)
    done
    local total=0 sent
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || true
        sent=$(grep -oE '^[0-9]+ packets transmitted' "${logs[$i]}" | grep -oE '^[0-9]+' || echo 0)
        total=$((total + sent))
        rm -f "${logs[$i]}"
    done
    echo "$total"
}

pcap_replay() {
    command -v tcpreplay >/dev/null || die "tcpreplay is not installed"
    command -v tcpdump >/dev/null || die "tcpdump is not installed"
    mkdir -p "$RUN_DIR"
    local pcap=$RUN_DIR/attack.pcap
    if [[ ! -s $pcap ]]; then
        # Record up to 2000 SYNs from 198.18.2.1 (each with its own source
        # port) as they leave the client namespace: lab addresses only.
        check_source 198.18.2.1
        ip netns exec "$CLI" timeout 30 tcpdump -q -i cli0 -w "$pcap" \
            "tcp[tcpflags] & tcp-syn != 0 and src host 198.18.2.1" >/dev/null 2>&1 &
        local dump=$!
        sleep 1
        ip netns exec "$CLI" timeout -s INT 10 hping3 -q -S -a 198.18.2.1 -p "$PORT" -i u500 -c 2000 "$TARGET" \
            >/dev/null 2>&1 || true
        sleep 0.5
        kill -INT "$dump" 2>/dev/null || true
        wait "$dump" || true
        [[ -s $pcap ]] || die "recording $pcap failed"
    fi
    local out
    out=$(ip netns exec "$CLI" timeout -s INT $((DURATION + 5)) \
        tcpreplay -q -i cli0 --pps "$RATE" --loop 1000 --limit $((RATE * DURATION)) "$pcap" 2>&1 || true)
    echo "$out" | grep -oE 'Actual: [0-9]+ packets' | grep -oE '[0-9]+' | head -1 || echo 0
}

case $SCENARIO in
syn-flood) packets=$(flood 16 -S) ;;
syn-flood-single-source) packets=$(flood 1 -S) ;;
ack-flood) packets=$(ack_flood) ;;
rst-flood) packets=$(flood 16 -R) ;;
fin-flood) packets=$(flood 16 -F) ;;
syn-with-payload) packets=$(flood 16 -S -d 200) ;;
syn-fin) packets=$(flood 16 -S -F) ;;
null) packets=$(flood 16) ;;
xmas) packets=$(flood 16 -F -P -U) ;;
ip-fragments) packets=$(flood 16 -S -f -d 64) ;;
pcap-replay) packets=$(pcap_replay) ;;
*) die "unknown scenario $SCENARIO (see --help)" ;;
esac
# Offered rate over the flood window (hping3 start-up is not part of it).
echo "scenario=$SCENARIO packets=$packets seconds=$DURATION offered_pps=$((packets / DURATION))"
