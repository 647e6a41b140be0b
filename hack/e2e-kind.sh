#!/usr/bin/env bash
# `make e2e-kind`, for Linux machines with Docker (not the machine this repository is built on): the
# e2e suite against the operator image running in a kind cluster, installed by the chart.
#  1. build the image, create a kind cluster, load the image into it;
#  2. copy the cluster's CA (ca.crt, ca.key) out of the node: tests mint per-user client certificates;
#  3. helm install charts/envbranch: CRDs, the operator and its RBAC, the copy-flags admission policy
#     and the user roles (all unconditional in the chart); then give the operator the suite's short
#     timers and fault injection (envbranch_testing.operator.E2E_OPERATOR_ENV);
#  4. run tests/e2e with PostgreSQL on the kind network's gateway, an address of this machine that
#     Pods reach. The suite reads (see tests/conftest.py):
#       ENVBRANCH_E2E_KUBECONFIG=<the cluster's admin kubeconfig>  no local control plane
#       ENVBRANCH_E2E_CA_DIR=<folder with ca.crt and ca.key>
#       ENVBRANCH_E2E_OPERATOR=external   wait for the chart's Deployment, start no operator
#       ENVBRANCH_PG_LISTEN=<gateway>     where PostgreSQL listens; each DatabaseServer's spec.host
#  5. delete the cluster on exit (KEEP_CLUSTER=1 keeps it).
# Needs docker, kind (v0.23+: a Kubernetes 1.30+ node), kubectl and helm on PATH. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-envbranch}
repository=envbranch/operator
tag=e2e
work=$(mktemp -d)
cleanup() {
  [ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$cluster"
  rm -rf "$work"
}
[ -x .venv/bin/pytest ] || make venv

docker build -t "$repository:$tag" .
trap cleanup EXIT
kind create cluster --name "$cluster" --wait 120s
kind load docker-image "$repository:$tag" --name "$cluster"
kind get kubeconfig --name "$cluster" >"$work/kubeconfig"
export KUBECONFIG=$work/kubeconfig
for file in ca.crt ca.key; do
  docker cp "$cluster-control-plane:/etc/kubernetes/pki/$file" "$work/$file"
done

helm install envbranch charts/envbranch --namespace envbranch-system --create-namespace \
  --set image.repository="$repository" --set image.tag="$tag" --wait
mapfile -t timers < <(.venv/bin/python -c 'from envbranch_testing.operator import E2E_OPERATOR_ENV as env
print("\n".join(f"{k}={v}" for k, v in env.items()))')
kubectl -n envbranch-system set env deployment/envbranch-operator "${timers[@]}"
kubectl -n envbranch-system rollout status deployment/envbranch-operator --timeout=180s

gateway=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' |
  tr ' ' '\n' | grep -m1 -E '^[0-9]+(\.[0-9]+){3}$') ||
  { echo "error: no IPv4 gateway on the docker network kind" >&2; exit 1; }

ENVBRANCH_E2E_KUBECONFIG=$work/kubeconfig ENVBRANCH_E2E_CA_DIR=$work ENVBRANCH_E2E_OPERATOR=external \
  ENVBRANCH_PG_LISTEN=$gateway .venv/bin/pytest tests/e2e -q "$@"
