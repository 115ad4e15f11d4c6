#!/usr/bin/env bash
# Puts a Valkey server (>= 7.2, for WAITAOF) where the Redis test harness
# (tests/src/redis.rs, `ServerKind::Valkey`) looks for it:
#
#   ${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}/valkey-<version>/bin/valkey-server
#
# Debian bookworm ships redis-server 7.0, which has no WAITAOF; Valkey 8 comes from
# bookworm-backports. Nothing is installed system-wide: the two .deb files are
# fetched with `apt-get download` through a private apt state (its own source
# list naming only bookworm-backports, its own lists and cache, in a scratch
# folder) and unpacked with `dpkg-deb -x`, so the system's sources, its
# redis-server and its services stay as they are. Only the shared libraries
# Valkey links against (the same ones redis-server uses) are apt-installed, and
# only when one is missing.
#
# A second run checks the binary and exits. Prints the bin folder as its last
# line of standard output.
set -euo pipefail

# Keep in step with VALKEY_VERSION in tests/src/redis.rs. Backports carries one
# version at a time; when it moves on, this download fails and says so.
VALKEY_DEB_VERSION=8.0.1+dfsg1-1~bpo12+1
MIRROR="${HOOKGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

upstream="${VALKEY_DEB_VERSION%%+*}"
cache="${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}"
dir="$cache/valkey-$upstream"
bin="$dir/bin"

say() { printf 'valkey-deps: %s\n' "$*" >&2; }
die() {
    printf 'valkey-deps: error: %s\n' "$*" >&2
    exit 1
}

# Succeeds when $1/valkey-server runs, is the pinned version, and every shared
# library it needs resolves.
check() {
    local server="$1/valkey-server" version
    [ -x "$server" ] || return 1
    ldd "$server" 2>/dev/null | grep -q 'not found' && return 1
    version="$("$server" --version 2>/dev/null)" || return 1
    [[ "$version" == "Valkey server v=$upstream "* ]]
}

if check "$bin"; then
    say "valkey-server $upstream is in $bin"
    echo "$bin"
    exit 0
fi

for tool in apt-get dpkg-deb ldd; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not available (a Debian system is needed to fetch Valkey from bookworm-backports)"
done
[ -r "$KEYRING" ] || die "$KEYRING is missing (apt-get install debian-archive-keyring) to verify bookworm-backports"

mkdir -p "$cache"
# Scratch folders of this run, inside the cache (a half-unpacked tree never lands in $dir).
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT
work="$(mktemp -d "$cache/.valkey.XXXXXX")"
scratch+=("$work")

mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources.d" "$work/debs" "$work/root"
echo "deb [signed-by=$KEYRING] $MIRROR bookworm-backports main" >"$work/sources.list"
apt_options=(
    -o "Dir::Etc::sourcelist=$work/sources.list"
    -o "Dir::Etc::sourceparts=$work/sources.d"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    # The private folders belong to the caller; apt's _apt user cannot write them.
    -o "APT::Sandbox::User=$(id -un)"
)

say "fetching the bookworm-backports index from $MIRROR (private apt state, system sources untouched)"
# --error-on=any: a mirror that cannot be reached is an error, not a warning.
apt-get -q "${apt_options[@]}" --error-on=any update >"$work/update.log" 2>&1 \
    || die "apt-get update of bookworm-backports failed:$(printf '\n'; cat "$work/update.log")"

say "downloading valkey-server and valkey-tools $VALKEY_DEB_VERSION"
if ! (cd "$work/debs" && apt-get -q "${apt_options[@]}" download \
    "valkey-server=$VALKEY_DEB_VERSION" "valkey-tools=$VALKEY_DEB_VERSION") >"$work/download.log" 2>&1; then
    available="$(apt-cache "${apt_options[@]}" madison valkey-server 2>/dev/null | awk -F' [|] ' '{print $2}' | paste -sd' ' -)" || true
    die "downloading Valkey $VALKEY_DEB_VERSION from bookworm-backports failed (it offers: ${available:-none}); if the version moved on, bump VALKEY_DEB_VERSION here and VALKEY_VERSION in tests/src/redis.rs:$(printf '\n'; cat "$work/download.log")"
fi

for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done

# The shared libraries (valkey-tools' Depends, the same as redis-tools'): install the
# missing ones from the system's own sources.
if ldd "$work/root/usr/bin/valkey-server" | grep -q 'not found'; then
    needed=()
    for package in $(dpkg-deb -f "$work"/debs/valkey-tools_*.deb Depends | tr ',' '\n' \
        | sed -E 's/[(|].*//; s/[[:space:]]//g' | grep -v '^adduser$'); do
        dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || needed+=("$package")
    done
    [ "${#needed[@]}" -gt 0 ] \
        || die "valkey-server misses shared libraries although its dependencies are installed:$(printf '\n'; ldd "$work/root/usr/bin/valkey-server" | grep 'not found')"
    if [ "$(id -u)" = 0 ]; then
        sudo=()
    else
        command -v sudo >/dev/null 2>&1 || die "installing ${needed[*]} (Valkey's shared libraries) needs root (or sudo)"
        sudo=(sudo)
    fi
    say "installing ${needed[*]} (apt-get; Valkey's shared libraries)"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >&2
fi

# Only the binaries (valkey-server is a symlink to valkey-check-rdb: the binary picks its
# role by its name) and the licence; no config, init script or systemd unit.
mkdir -p "$work/tree/bin" "$work/tree/doc"
cp -a "$work"/root/usr/bin/valkey-* "$work/tree/bin/"
cp "$work/root/usr/share/doc/valkey-tools/copyright" "$work/tree/doc/copyright"
if ! check "$work/tree/bin"; then
    die "the unpacked valkey-server does not run as Valkey $upstream:$(printf '\n'; ldd "$work/tree/bin/valkey-server" 2>&1 | grep 'not found'; "$work/tree/bin/valkey-server" --version 2>&1)"
fi

rm -rf "$dir"
mv "$work/tree" "$dir"
say "installed $("$bin/valkey-server" --version | cut -d' ' -f1-3) into $bin"
echo "$bin"
