#!/bin/bash
# bpf/verifier-stats.sh [OBJECT] — what the kernel's verifier says about each
# program of an XDP object (default bpf/synguard_xdp.o) on this kernel: the
# instructions it processed (of its 1,000,000 limit) and the stack depth of
# the program's call chain (of 512 bytes), one line per program:
#
#   sg_fast_path: 97519 instructions processed (limit 1000000), stack 424+0+0 bytes (limit 512)
#
# How: `bpftool -d prog loadall` loads every program with the verifier log on
# (level 7, which prints its statistics; the log itself is tens of MB and is
# only filtered here, never stored) into a bpffs directory of its own, removed
# on exit whatever happens. Nothing is attached. Needs root and bpftool
# (installed when missing: deploy/lab/tools.sh). Exits non-zero when a
# program does not load or a number is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OBJ=${1:-bpf/synguard_xdp.o}
[[ -r $OBJ ]] || { echo "verifier-stats.sh: cannot read $OBJ" >&2; exit 1; }
# shellcheck source=deploy/lab/tools.sh
. deploy/lab/tools.sh
ensure_tools bpftool || exit 1
[[ $(id -u) -eq 0 ]] || { echo "verifier-stats.sh: needs root (loads BPF programs)" >&2; exit 1; }

PIN=$(mktemp -d /sys/fs/bpf/synguard-verifier-XXXXXX) # bpffs refuses names with a dot
trap 'rm -rf -- "$PIN"' EXIT
set +o pipefail
bpftool -d prog loadall "$OBJ" "$PIN" type xdp 2>&1 | awk '
    /-- BEGIN PROG LOAD LOG --/ {
        prog = $0
        sub(/.*prog \047/, "", prog)
        sub(/\047: -- BEGIN.*/, "", prog)
    }
    /^stack depth / { stack[prog] = $3 }
    /^processed [0-9]+ insns/ { insns[prog] = $2; order[++n] = prog }
    END {
        for (i = 1; i <= n; i++) {
            p = order[i]
            printf "%s: %s instructions processed (limit 1000000), stack %s bytes (limit 512)\n", p, insns[p], stack[p]
        }
        exit n == 0
    }'
rcs=("${PIPESTATUS[@]}")
[[ ${rcs[0]} -eq 0 ]] || { echo "verifier-stats.sh: bpftool prog loadall $OBJ failed (exit ${rcs[0]})" >&2; exit 1; }
[[ ${rcs[1]} -eq 0 ]] || { echo "verifier-stats.sh: no verifier statistics in the log of $OBJ" >&2; exit 1; }
