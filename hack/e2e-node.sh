#!/usr/bin/env bash
# `make test-node`: the chart on a real local node, no Docker, no registry (hack/e2e-kind.sh is the
# kind equivalent for machines with Docker). Root only.
#  1. build the node (hack/build-node.sh), the control plane and helm (cached), and the operator
#     image from the Dockerfile's declared contents (envbranch_testing.image, cached base layer);
#  2. start a control plane, PostgreSQL and a node (`python -m envbranch_testing up --node`), import
#     the image into the node's containerd (`ctr -n k8s.io images import`: never pushed);
#  3. helm install charts/envbranch with the chart's defaults and the local image, wait for the Pod to
#     be Ready through its probes; tests/node checks the Pod (ServiceAccount, probes, tools in image);
#  4. give the operator the suite's short timers, run tests/e2e against it in external-operator mode
#     with PostgreSQL on the node's bridge address (ENVBRANCH_PG_LISTEN);
#  5. tests/node again for what changes the release: upgrade to two replicas (peering), uninstall;
#  6. stop everything (KEEP_NODE=1 leaves it up; `make down STATE=...` stops it later).
# Arguments go to the e2e pytest run (e.g. -k ...). E2E=0 skips step 4. Timings go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
export ENVBRANCH_CACHE=${ENVBRANCH_CACHE:-$HOME/.cache/envbranch}
state=${NODE_STATE:-$ENVBRANCH_CACHE/node-e2e}
py=.venv/bin/python
t0=$SECONDS
stamp() { echo ">> [$((SECONDS - t0))s] $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "error: the local node needs root (mounts, network namespaces, iptables)" >&2; exit 1; }
make --no-print-directory venv node >&2
cp_dir=$(bash hack/build-controlplane.sh)
tools_dir=$(bash hack/build-tools.sh)
node_dir=$(bash hack/build-node.sh)
export PATH="$cp_dir:$tools_dir:$PATH"
stamp "node, control plane and helm built"
mkdir -p "$ENVBRANCH_CACHE/image"
image_tar=$ENVBRANCH_CACHE/image/operator.tar
$py -m envbranch_testing.image --output "$image_tar" --cache "$ENVBRANCH_CACHE/image"
stamp "operator image built"

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  [ "${KEEP_NODE:-}" = 1 ] && { echo "left running: export KUBECONFIG=$state/k8s/admin.kubeconfig" >&2; return; }
  $py -m envbranch_testing down --state-dir "$state" >&2 || true
}
trap cleanup EXIT
$py -m envbranch_testing down --state-dir "$state" >/dev/null 2>&1 || true
$py -m envbranch_testing up --state-dir "$state" --node >&2
stamp "control plane, PostgreSQL and node up"
export KUBECONFIG=$state/k8s/admin.kubeconfig
"$node_dir/ctr" --address "$state/node/containerd/containerd.sock" -n k8s.io images import "$image_tar" >&2
stamp "image imported"

export ENVBRANCH_NODE_E2E=1 ENVBRANCH_E2E_KUBECONFIG=$KUBECONFIG ENVBRANCH_E2E_CA_DIR=$state/ca
ENVBRANCH_PG_LISTEN=$($py -c 'from envbranch_testing.node import NODE_ADDRESS; print(NODE_ADDRESS)')
export ENVBRANCH_PG_LISTEN
.venv/bin/pytest -q -p no:cacheprovider tests/node -m "not after_e2e" >&2
stamp "chart installed, Pod Ready, checks passed"

if [ "${E2E:-1}" = 1 ]; then
  mapfile -t timers < <($py -c 'from envbranch_testing.operator import E2E_OPERATOR_ENV as env
print("\n".join(f"{k}={v}" for k, v in env.items()))')
  kubectl -n envbranch-system set env deployment/envbranch-operator "${timers[@]}" >&2
  kubectl -n envbranch-system rollout status deployment/envbranch-operator --timeout=180s >&2
  # Upgrade and uninstall run whatever the e2e suite says; the script fails if either did.
  e2e_rc=0
  ENVBRANCH_E2E_OPERATOR=external .venv/bin/pytest -q -p no:cacheprovider tests/e2e "$@" || e2e_rc=$?
  stamp "e2e suite against the Pod done (exit $e2e_rc)"
fi
.venv/bin/pytest -q -p no:cacheprovider tests/node -m after_e2e
stamp "upgrade and uninstall done"
exit "${e2e_rc:-0}"
