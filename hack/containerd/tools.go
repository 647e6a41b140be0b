//go:build tools

// Package tools pins the local node's container runtime: containerd (with the CRI plugin
// kubelet talks to), its runc shim and ctr, built by hack/build-node.sh. Debian bookworm's
// containerd is 1.6, older than the 1.7 that kubelet 1.34 asks for.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
