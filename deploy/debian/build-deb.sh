#!/usr/bin/env bash
# deploy/debian/build-deb.sh: build target/debian/synguard_<version>-1_<arch>.deb.
# Builds the release binary, has it generate its man pages and shell completions
# (hidden `generate-docs` subcommand, from the clap definitions), derives the
# packaged /etc/synguard/synguard.toml from config/synguard.toml (the one change:
# cookies.secret_file points at the secret the postinst writes), then runs
# `cargo deb --no-build --strip` (the release profile keeps debug info for
# profiling; the package does not need it). Installs what it needs when missing:
# cargo-deb (`cargo install cargo-deb --locked`), and dpkg-dev and binutils from
# Debian's packages (as root; deploy/lab/tools.sh). Prints the path of the .deb on
# its last line.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/../.."
CARGO=${CARGO:-cargo}
OUT=target/deb-assets

# shellcheck source=deploy/lab/tools.sh
. deploy/lab/tools.sh
ensure_tools dpkg-deb dpkg-shlibdeps strip || exit 1
if ! "$CARGO" deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: cargo-deb missing -> cargo install cargo-deb --locked" >&2
    "$CARGO" install cargo-deb --locked </dev/null >&2 ||
        { echo "build-deb.sh: MISSING TOOL: cargo-deb (cargo install cargo-deb --locked failed)" >&2; exit 1; }
fi

"$CARGO" build --release
rm -rf "$OUT"
target/release/synguard generate-docs --out "$OUT"
gzip -9n "$OUT"/man/*.1

# The packaged config: the documented default file with secret_file set.
commented='# secret_file = "/etc/synguard/secret"'
grep -qxF "$commented" config/synguard.toml ||
    { echo "build-deb.sh: config/synguard.toml lacks the line: $commented" >&2; exit 1; }
sed "s|^# secret_file = \"/etc/synguard/secret\"\$|secret_file = \"/etc/synguard/secret\"|" \
    config/synguard.toml >"$OUT/synguard.toml"

"$CARGO" deb --no-build --strip --output target/debian/ >&2
ls -t target/debian/synguard_*.deb | head -n 1
