//go:build tools

// Package tools pins the Kubernetes commands this module builds: kube-apiserver,
// kube-controller-manager and kubectl, at one Kubernetes release.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
