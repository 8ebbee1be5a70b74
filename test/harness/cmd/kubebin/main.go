// Command kubebin is a multi-call binary holding the real Kubernetes parts the
// tests need: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kubelet, kube-proxy and kubectl. They share most of their packages, so compiling them into one
// binary compiles the shared code once (the way k3s does). The part to run is
// chosen by argv[0] (a symlink) or by the first argument.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if name == "kubebin" {
		if len(os.Args) < 2 {
			fmt.Fprintln(os.Stderr, "usage: kubebin etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl [args...]")
			os.Exit(2)
		}
		name = os.Args[1]
		args = os.Args[1:]
	}
	// Each command parses os.Args itself, so present it the way it expects.
	os.Args = args
	switch name {
	case "etcd":
		etcdmain.Main(args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kubelet":
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "kube-proxy":
		os.Exit(cli.Run(proxy.NewProxyCommand()))
	case "kubectl":
		os.Exit(cli.Run(kubectlcmd.NewDefaultKubectlCommand()))
	default:
		fmt.Fprintf(os.Stderr, "kubebin: unknown command %q\n", name)
		os.Exit(2)
	}
}
