//go:build tools

// Package tools keeps the Kubernetes command packages in this module's
// dependency graph so that `go mod tidy` records every module they need and
// `go build k8s.io/kubernetes/cmd/...` works from inside this module.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
