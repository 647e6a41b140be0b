#!/usr/bin/env bash
# For machines with Docker (not these): build the image, create a kind cluster, install the chart,
# and run the e2e suite against it. Needs docker, kind and helm on PATH.
set -euo pipefail
cluster=${KIND_CLUSTER:-envbranch}
image=envbranch/operator:e2e
docker build -t "$image" .
kind create cluster --name "$cluster" --wait 120s
trap 'kind delete cluster --name "$cluster"' EXIT
kind load docker-image "$image" --name "$cluster"
helm install envbranch charts/envbranch --namespace envbranch-system --create-namespace \
  --set image.repository=envbranch/operator --set image.tag=e2e --wait
KUBECONFIG="$(kind get kubeconfig-path --name "$cluster" 2>/dev/null || echo "$HOME/.kube/config")" \
  ENVBRANCH_E2E_EXTERNAL=1 .venv/bin/pytest tests/e2e -q
