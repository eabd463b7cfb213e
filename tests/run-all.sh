#!/usr/bin/env bash
# tests/run-all.sh — the project's one test command (`sudo tests/run-all.sh`; .ci/run
# calls exactly this). Installs the lab tools if missing, then builds, runs every unit
# and integration test (the namespace lab tests serialize themselves through
# /tmp/synguard-lab.lock), clippy, rustfmt, and checks that no lab namespace was left
# behind. Runs unattended (no stdin needed); never skips a step: a tool still missing
# after the install is a failure that names it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: sudo tests/run-all.sh [-h]

Runs, in order, and prints a summary (exit 1 if any step failed):
  1. root check; installs the Debian package of every missing tool (the table in
     deploy/lab/tools.sh: iproute2 nftables ethtool hping3 iputils-ping tcpdump
     tcpreplay procps coreutils util-linux python3 prometheus clang libbpf-dev dpkg
     dpkg-dev binutils systemd man-db adduser bpftool) with one `apt-get update`, and
     cargo-deb with `cargo install cargo-deb --locked`, then fails loudly naming
     any tool that is still missing
  2. cargo build --release
  3. cargo test --release            (unit + integration, incl. namespace lab tests,
                                      XDP fast path at its default)
  3b. the namespace lab tests again with SYNGUARD_LAB_XDP=off
  4. cargo clippy --all-targets -- -D warnings
  5. cargo fmt --check
  6. no sg-* network namespace left behind by this run
Environment: CARGO (cargo binary), SYNGUARD_TEST_ARGS (extra args after `cargo test
--release --`, e.g. a test name filter), SYNGUARD_LAB_STANDIN=bridge (lab tests use
a Linux bridge instead of synguard: harness self-test only), SYNGUARD_LAB_XDP
(auto|native|generic|off: the io.xdp of every lab gateway in step 3).
EOF
}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    usage
    exit 0
fi
[[ $# -eq 0 ]] || {
    usage >&2
    exit 2
}

export CI=${CI:-true}
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
LOCK=/tmp/synguard-lab.lock

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

log() { printf '\n=== %s\n' "$*"; }
die() {
    printf '\nrun-all.sh: FAILED: %s\n' "$*" >&2
    exit 1
}

# --- 1. environment -------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, nftables, hping3): sudo tests/run-all.sh"

# Everything the steps below call; deploy/lab/tools.sh installs what is missing
# from Debian's packages (one table of tool -> package for every script).
# tcpreplay: deploy/lab/attack.sh pcap-replay. promtool, prometheus:
# tests/promtool.rs, tests/lab_prometheus.rs (on a systemd host installing the
# package also starts a system Prometheus on :9090 of the root namespace; the
# tests run their own in the lab's gateway namespace). clang, bpf_helpers.h:
# bpf/build.sh --check. dpkg-deb ... adduser, unshare: tests/package.rs builds the
# .deb (cargo-deb runs dpkg-shlibdeps and strip), verifies the units, runs the
# postinst in a mount namespace. bpftool: tests/xdp_verifier.rs (bpf/verifier-stats.sh).
TOOLS=(ip nstat ss nsenter nft ethtool hping3 ping tcpdump sysctl timeout flock setpriv tcpreplay tcprewrite
    python3 promtool prometheus clang bpf_helpers.h dpkg-deb dpkg-shlibdeps strip systemd-analyze
    man adduser unshare bpftool)
# shellcheck source=deploy/lab/tools.sh
. deploy/lab/tools.sh
ensure_tools "${TOOLS[@]}" || die "required tools missing (lines above)"

CARGO=${CARGO:-}
if [[ -z $CARGO ]]; then
    if command -v cargo >/dev/null 2>&1; then
        CARGO=$(command -v cargo)
    elif [[ -n ${SUDO_USER:-} && -x $(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/bin/cargo ]]; then
        # sudo from a user with a rustup toolchain: use that user's toolchain.
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        CARGO="$user_home/.cargo/bin/cargo"
        export CARGO_HOME=${CARGO_HOME:-$user_home/.cargo}
        [[ -d $user_home/.rustup ]] && export RUSTUP_HOME=${RUSTUP_HOME:-$user_home/.rustup}
    elif [[ -x /root/.cargo/bin/cargo ]]; then
        CARGO=/root/.cargo/bin/cargo
    else
        die "MISSING TOOL: cargo (install Rust via rustup, or set CARGO=/path/to/cargo)"
    fi
fi
PATH="$(dirname -- "$CARGO"):$PATH"
# tests/package.rs builds the Debian package with cargo-deb.
if ! "$CARGO" deb --version >/dev/null 2>&1; then
    log "missing cargo-deb -> cargo install cargo-deb --locked"
    "$CARGO" install cargo-deb --locked </dev/null || die "cargo install cargo-deb failed"
    "$CARGO" deb --version >/dev/null 2>&1 || die "MISSING TOOL: cargo-deb (cargo install cargo-deb --locked)"
fi
echo "tools ok: ${TOOLS[*]}; cargo: $CARGO ($("$CARGO" --version))"

# Lab namespaces that exist before we start are not ours (e.g. a `lab.sh demo`).
mapfile -t NS_BEFORE < <(ip netns list | awk '{print $1}' | grep '^sg-' || true)
if [[ ${#NS_BEFORE[@]} -gt 0 ]]; then
    echo "note: pre-existing lab namespaces (not ours, ignored): ${NS_BEFORE[*]}"
fi

# --- 2-5. steps -------------------------------------------------------------------
declare -a NAMES=() RESULTS=() TIMES=() LOGS=()
FAILED=0
# Each step's output is also kept, so the summary can repeat why a failed step
# failed: in a long CI log the reason is otherwise thousands of lines up.
STEP_LOGS=$(mktemp -d /tmp/synguard-run-all.XXXXXX)
trap 'rm -rf -- "$STEP_LOGS"' EXIT
step() {
    local name=$1 start rc logf
    shift
    log "$name: $*"
    start=$SECONDS
    logf="$STEP_LOGS/${#NAMES[@]}.log"
    set +e
    "$@" </dev/null 2>&1 | tee "$logf"
    rc=${PIPESTATUS[0]}
    set -e
    NAMES+=("$name")
    TIMES+=("$((SECONDS - start))s")
    LOGS+=("$logf")
    if [[ $rc -eq 0 ]]; then
        RESULTS+=("PASS")
    else
        RESULTS+=("FAIL (exit $rc)")
        FAILED=1
    fi
}

# Why a step failed: the lab checks that failed ([FAIL]), panics with their
# message line, failing test names, compiler errors. At most 60 lines per step.
failure_digest() {
    grep -E -A2 '^\s*\[FAIL\]|panicked at|^test .* FAILED$|^error(\[E[0-9]+\])?:' -- "$1" |
        grep -v -E '^\s*\[ok\]' | head -n 60 || true
}

read -r -a TEST_ARGS <<<"${SYNGUARD_TEST_ARGS:-}"
step "bpf object" bpf/build.sh --check
step "build" "$CARGO" build --release
step "test" "$CARGO" test --release --no-fail-fast -- --show-output "${TEST_ARGS[@]}"
# The lab suite again with the XDP fast path off: the AF_PACKET path alone
# must keep working (the run above used the default, io.xdp = "auto").
step "lab (xdp off)" env SYNGUARD_LAB_XDP=off "$CARGO" test --release --no-fail-fast \
    --test lab_basic --test lab_state --test lab_stacks --test lab_attacks --test lab_prometheus --test lab_restart --test lab_ecmp \
    -- --show-output "${TEST_ARGS[@]}"
step "clippy" "$CARGO" clippy --all-targets -- -D warnings
step "fmt" "$CARGO" fmt --check

# --- 6. leaked namespaces -----------------------------------------------------------
check_namespaces() {
    local ns old leaked=()
    # Under the lab lock: no lab test (of any run) is half-way through its cleanup.
    mapfile -t NS_AFTER < <(flock "$LOCK" ip netns list | awk '{print $1}' | grep '^sg-' || true)
    for ns in "${NS_AFTER[@]}"; do
        for old in "${NS_BEFORE[@]}"; do
            [[ $ns == "$old" ]] && continue 2
        done
        leaked+=("$ns")
    done
    if [[ ${#leaked[@]} -gt 0 ]]; then
        echo "leaked lab namespaces: ${leaked[*]}" >&2
        echo "(remove with: for n in ${leaked[*]}; do ip netns del \$n; done)" >&2
        return 1
    fi
    echo "no sg-* namespaces left behind"
}
step "namespaces" check_namespaces

# --- summary ------------------------------------------------------------------------
printf '\n=== summary (%s)\n' "$REPO_ROOT"
for i in "${!NAMES[@]}"; do
    printf '  %-11s %-16s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}"
done
if [[ $FAILED -ne 0 ]]; then
    for i in "${!NAMES[@]}"; do
        [[ ${RESULTS[$i]} == PASS ]] && continue
        printf '\n=== why "%s" failed (from its output above)\n' "${NAMES[$i]}"
        failure_digest "${LOGS[$i]}"
    done
    echo "RESULT: FAIL"
    exit 1
fi
echo "RESULT: PASS"
