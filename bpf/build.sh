#!/bin/sh
# Rebuild bpf/synguard_xdp.o from bpf/synguard_xdp.c, reproducibly:
# -ffile-prefix-map strips the checkout path that -g would record, so two
# clones in different folders produce byte-identical objects (design.md 8).
# Needs Debian's clang (14) and libbpf-dev. `bpf/build.sh --check` rebuilds
# into a temporary file and fails when the committed object is stale.
set -eu
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
build() {
	"$CLANG" -O2 -g -target bpf -mcpu=v3 -Wall -Wextra -Werror \
		-ffile-prefix-map="$PWD"=. \
		-I/usr/include/"$(uname -m)"-linux-gnu -Ibpf \
		-c bpf/synguard_xdp.c -o "$1"
}
if [ "${1:-}" = "--check" ]; then
	tmp=$(mktemp)
	trap 'rm -f "$tmp"' EXIT
	build "$tmp"
	if ! cmp -s "$tmp" bpf/synguard_xdp.o; then
		echo "bpf/synguard_xdp.o is stale: run bpf/build.sh and commit the object" >&2
		exit 1
	fi
	echo "bpf/synguard_xdp.o is up to date"
else
	build bpf/synguard_xdp.o
	echo "built bpf/synguard_xdp.o ($(wc -c < bpf/synguard_xdp.o) bytes)"
fi
