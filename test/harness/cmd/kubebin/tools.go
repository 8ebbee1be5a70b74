//go:build tools

// Package main records the helm command as a dependency of this module, so
// `go build helm.sh/helm/v3/cmd/helm` builds it from the same module graph.
package main

import _ "helm.sh/helm/v3/cmd/helm"
