#!/usr/bin/env bash
# Builds what a local node needs into $ENVBRANCH_CACHE/node-<k8s>-containerd-<v>-coredns-<v>/ (skipped
# when everything is already there), next to the control plane's cache:
#  - kubelet, kube-proxy and kube-scheduler (Pods need one) from the same k8s.io/kubernetes module as the control plane (hack/k8s);
#  - CoreDNS with only the kubernetes plugin (hack/coredns): the cluster DNS Pods resolve
#    kubernetes.default.svc with (Kopf's in-cluster login uses that name);
#  - containerd, containerd-shim-runc-v2 and ctr from Go modules (hack/containerd): Debian
#    bookworm's containerd is 1.6, kubelet 1.34 wants 1.7 or later;
#  - the pause image: kubernetes' build/pause/linux/pause.c (shipped in the k8s.io/kubernetes
#    module) compiled statically with gcc and packed as an OCI image archive (pause.tar) that
#    `ctr images import` takes.
# runc, the CNI plugins and iptables come from Debian's packages (hack/apt-install.sh; see
# hack/node.sh). Prints the directory holding the binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
modver() { awk -v m="$2" '{for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$here/$1/go.mod"; }
k8s_version=$(modver k8s k8s.io/kubernetes)
containerd_version=$(modver containerd github.com/containerd/containerd/v2)
coredns_version=$(modver coredns github.com/coredns/coredns)
cache=${ENVBRANCH_CACHE:-$HOME/.cache/envbranch}
out="$cache/node-${k8s_version}-containerd-${containerd_version}-coredns-${coredns_version}"
files=(kubelet kube-proxy kube-scheduler coredns containerd containerd-shim-runc-v2 ctr pause pause.tar)

have_all() { for f in "${files[@]}"; do [ -s "$out/$f" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.build-node.lock"
flock 9
if have_all; then echo "$out"; exit 0; fi

for tool in go gcc python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to build the local node" >&2; exit 1; }
done

mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
minor=$(echo "$k8s_version" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor \
 -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
if [ ! -s "$out.tmp/kubelet" ] || [ ! -s "$out.tmp/kube-proxy" ] || [ ! -s "$out.tmp/kube-scheduler" ]; then
  echo ">> building kubelet, kube-proxy, kube-scheduler $k8s_version into $out" >&2
  (cd "$here/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler) >&2
fi
if [ ! -s "$out.tmp/containerd" ]; then
  echo ">> building containerd $containerd_version" >&2
  cver=github.com/containerd/containerd/v2/version
  (cd "$here/containerd" && go build -trimpath -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X $cver.Version=$containerd_version -X $cver.Package=github.com/containerd/containerd/v2" \
    -o "$out.tmp/" github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr) >&2
fi
if [ ! -s "$out.tmp/coredns" ]; then
  echo ">> building coredns $coredns_version (bind, errors, health and kubernetes plugins only)" >&2
  (cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/coredns" .) >&2
fi

echo ">> building the pause image" >&2
pause_src=$(cd "$here/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
gcc -Os -Wall -Werror -static -DVERSION="$k8s_version" -o "$out.tmp/pause" "$pause_src"
strip "$out.tmp/pause"
python3 "$here/oci_image.py" --output "$out.tmp/pause.tar" --name registry.k8s.io/pause:3.10.1 \
  --entrypoint /pause --user 65535:65535 --layer-file "$out.tmp/pause:pause:0755" >&2

rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
