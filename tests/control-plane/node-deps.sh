#!/usr/bin/env bash
# Installs the OS packages the one-node test cluster (tests/src/node) runs, when missing:
# containerd (1.6, with ctr and its runc shim), runc, the CNI plugins (bridge,
# host-local, loopback, portmap in /usr/lib/cni) and iptables (kube-proxy's mode).
# Debian's containerd package starts no daemon where there is no systemd; the
# harness runs its own containerd inside the node's network namespace.
set -euo pipefail

say() { printf 'node-deps: %s\n' "$*" >&2; }
die() {
    printf 'node-deps: error: %s\n' "$*" >&2
    exit 1
}

missing=()
command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1 \
    && command -v containerd-shim-runc-v2 >/dev/null 2>&1 || missing+=(containerd)
[ -x /usr/sbin/runc ] || missing+=(runc)
for plugin in bridge host-local loopback portmap; do
    [ -x "/usr/lib/cni/$plugin" ] || { missing+=(containernetworking-plugins); break; }
done
command -v iptables >/dev/null 2>&1 || missing+=(iptables)

if [ "${#missing[@]}" = 0 ]; then
    say "containerd, runc, the CNI plugins and iptables are installed"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get is not available to install ${missing[*]} (Debian/Ubuntu packages)"
if [ "$(id -u)" = 0 ]; then
    sudo=()
else
    command -v sudo >/dev/null 2>&1 || die "installing ${missing[*]} needs root (or sudo)"
    sudo=(sudo)
fi
say "installing ${missing[*]} (apt-get)"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
say "installed ${missing[*]}"
