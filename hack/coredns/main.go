// A CoreDNS with only the plugins the local node's cluster DNS needs (bind, kubernetes, errors, health):
// Pods resolve kubernetes.default.svc and the cluster's Services as on any cluster (Kopf's in-cluster
// login uses that name). Built by hack/build-node.sh.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() {
	dnsserver.Directives = []string{"bind", "errors", "health", "kubernetes"}
}

func main() {
	coremain.Run()
}
