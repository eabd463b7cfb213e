#!/bin/bash
# Rebuild the committed XDP objects from their C sources, reproducibly:
# -ffile-prefix-map strips the checkout path that -g would record, so two
# clones in different folders produce byte-identical objects (design.md 8).
#   bpf/synguard_xdp.o  the fast path (bpf/synguard_xdp.c)
#   bpf/xdp_pass.o      the lab end hosts' pass-everything program
#   bpf/bench_synack_sink.o  the SYN-flood benchmark's counting client end
#   bpf/bench_redirect.o     the SYN-flood benchmark's generator hop
# Needs Debian's clang (14) and libbpf-dev (installed when missing, as root:
# deploy/lab/tools.sh). `bpf/build.sh --check` rebuilds
# into temporary files and fails when a committed object is stale.
set -eu
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
# shellcheck source=deploy/lab/tools.sh
. deploy/lab/tools.sh
if [ "$CLANG" = clang ]; then
	ensure_tools clang bpf_helpers.h || exit 1
else
	ensure_tools bpf_helpers.h || exit 1
fi
OBJECTS="synguard_xdp xdp_pass bench_synack_sink bench_redirect"
build() {
	"$CLANG" -O2 -g -target bpf -mcpu=v3 -Wall -Wextra -Werror \
		-ffile-prefix-map="$PWD"=. \
		-I/usr/include/"$(uname -m)"-linux-gnu -Ibpf \
		-c "bpf/$1.c" -o "$2"
}
if [ "${1:-}" = "--check" ]; then
	tmp=$(mktemp)
	trap 'rm -f "$tmp"' EXIT
	stale=0
	for o in $OBJECTS; do
		build "$o" "$tmp"
		if ! cmp -s "$tmp" "bpf/$o.o"; then
			echo "bpf/$o.o is stale: run bpf/build.sh and commit the object" >&2
			stale=1
		fi
	done
	[ "$stale" -eq 0 ] || exit 1
	echo "bpf objects are up to date: $OBJECTS"
else
	for o in $OBJECTS; do
		build "$o" "bpf/$o.o"
		echo "built bpf/$o.o ($(wc -c < "bpf/$o.o") bytes)"
	done
fi
