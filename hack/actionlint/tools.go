//go:build tools

// Package tools pins the linter this module builds: actionlint (the GitHub Actions workflows in
// .github/workflows, run by make lint). A module of its own so that its dependencies never move
// those of helm and kubeconform (hack/tools).
package tools

import (
	_ "github.com/rhysd/actionlint/cmd/actionlint"
)
