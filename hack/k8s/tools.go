//go:build tools

// Package tools pins the Kubernetes commands this module builds at one Kubernetes release:
// kube-apiserver, kube-controller-manager and kubectl (hack/build-controlplane.sh), and the
// node's kubelet, kube-proxy and kube-scheduler (hack/build-node.sh).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
