// Command k8s is a multi-call binary holding the Kubernetes components the
// end-to-end tests run: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kubectl, plus kubelet and kube-proxy for the real node
// (e2e/cluster up --with-node) and netns-bridge, which carries the control
// plane's loopback traffic into and out of the node's network namespace. One binary links the shared Kubernetes packages
// once, which keeps a cold build on a 2-core CI machine within budget (the
// hyperkube approach). It dispatches on the name it was invoked by (symlinks),
// or on its first argument: `k8s kube-apiserver --flags...`.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	_ "time/tzdata" // CronJob time zones

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

var commands = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
	"kubelet", "kube-proxy", "netns-bridge"}

func main() {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	if !known(name) {
		if len(os.Args) < 2 || !known(os.Args[1]) {
			fmt.Fprintf(os.Stderr, "usage: k8s {%s} [flags]\n", strings.Join(commands, "|"))
			os.Exit(2)
		}
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	switch name {
	case "etcd":
		etcdmain.Main(os.Args)
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
	case "netns-bridge":
		os.Exit(netnsBridge(os.Args[1:]))
	case "kubectl":
		logs.GlogSetter(kubectl.GetLogVerbosity(os.Args)) // nolint:errcheck
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
	}
}

func known(name string) bool {
	for _, c := range commands {
		if c == name {
			return true
		}
	}
	return false
}
