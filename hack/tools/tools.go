//go:build tools

// Package tools pins the chart tooling this module builds: helm (lint, template) and kubeconform
// (schema validation of the rendered chart).
package tools

import (
	_ "github.com/yannh/kubeconform/cmd/kubeconform"
	_ "helm.sh/helm/v3/cmd/helm"
)
