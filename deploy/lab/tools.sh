# deploy/lab/tools.sh — sourced, never run: `ensure_tools TOOL...` makes sure the
# commands a lab, bench or test script needs are there. What is missing is installed
# from Debian's packages (one `apt-get update`, then `apt-get install` of the
# packages below that provide it), so every script the README names works on a
# fresh Debian machine; a tool still missing afterwards (or no apt-get, or not
# root) is an error that names the tool and its package. Never removes anything.
#
# The one table of which Debian package provides which tool; tests/run-all.sh,
# lab.sh, attack.sh and the benches all go through it.

declare -gA SG_TOOL_PKG=(
    [ip]=iproute2
    [nstat]=iproute2
    [ss]=iproute2
    [nft]=nftables
    [ethtool]=ethtool
    [hping3]=hping3
    [ping]=iputils-ping
    [tcpdump]=tcpdump
    [tcpreplay]=tcpreplay
    [tcprewrite]=tcpreplay
    [sysctl]=procps
    [timeout]=coreutils
    [flock]=util-linux
    [setpriv]=util-linux
    [unshare]=util-linux
    [nsenter]=util-linux
    [taskset]=util-linux
    [chrt]=util-linux
    [python3]=python3
    [promtool]=prometheus
    [prometheus]=prometheus
    [clang]=clang
    # Not a command: the BPF headers bpf/build.sh compiles against.
    [bpf_helpers.h]=libbpf-dev
    [bpftool]=bpftool
    [trafgen]=netsniff-ng
    [iperf3]=iperf3
    [ab]=apache2-utils
    [cc]=gcc
    [conntrack]=conntrack
    [dpkg-deb]=dpkg
    [dpkg-shlibdeps]=dpkg-dev
    [strip]=binutils
    [systemd-analyze]=systemd
    [man]=man-db
    [adduser]=adduser
    [curl]=curl
)

# Prints the tools of "$@" that are not there, one per line.
sg_missing_tools() { # TOOL...
    local t
    for t in "$@"; do
        case $t in
        bpf_helpers.h) [[ -f /usr/include/bpf/bpf_helpers.h ]] || printf '%s\n' "$t" ;;
        *) command -v "$t" >/dev/null 2>&1 || printf '%s\n' "$t" ;;
        esac
    done
}

# Installs what is missing of TOOL..., or returns 1 after one line per tool still
# missing on stderr ("<caller>: MISSING TOOL: T (Debian package P)").
ensure_tools() { # TOOL...
    local me=${0##*/} t missing pkgs=() still
    for t in "$@"; do
        [[ -n ${SG_TOOL_PKG[$t]:-} ]] || {
            echo "$me: ensure_tools: no package known for '$t' (deploy/lab/tools.sh)" >&2
            return 1
        }
    done
    mapfile -t missing < <(sg_missing_tools "$@")
    [[ ${#missing[@]} -eq 0 ]] && return 0
    for t in "${missing[@]}"; do
        [[ " ${pkgs[*]} " == *" ${SG_TOOL_PKG[$t]} "* ]] || pkgs+=("${SG_TOOL_PKG[$t]}")
    done
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$me: missing tool(s): ${missing[*]}; install them as root: apt-get install ${pkgs[*]}" >&2
        return 1
    fi
    echo "$me: missing tool(s): ${missing[*]} -> apt-get install ${pkgs[*]}" >&2
    # Quiet on success; apt's own errors still reach stderr.
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null ||
        echo "$me: apt-get update failed; trying the install with the package lists there are" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" \
        </dev/null >/dev/null || echo "$me: apt-get install ${pkgs[*]} failed" >&2
    mapfile -t still < <(sg_missing_tools "${missing[@]}")
    for t in "${still[@]}"; do
        echo "$me: MISSING TOOL: $t (Debian package ${SG_TOOL_PKG[$t]})" >&2
    done
    [[ ${#still[@]} -eq 0 ]]
}
