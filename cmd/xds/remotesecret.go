package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/pkg/source"
)

func runCreateRemoteSecret(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("create-remote-secret", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "your kubeconfig of the member cluster (its credentials are used once, to request a token; they are not in the output) (required)")
	var opts source.RemoteSecretOptions
	fs.StringVar(&opts.Member, "name", "", "the member cluster's name in the ClusterSet (required)")
	fs.StringVar(&opts.Namespace, "namespace", "eastwest-system", "the control plane's namespace, and the member's ServiceAccount namespace")
	fs.StringVar(&opts.ServiceAccount, "service-account", "eastwest", "the member's ServiceAccount (deploy/kubernetes/member-rbac.yaml)")
	fs.DurationVar(&opts.TokenTTL, "token-duration", 365*24*time.Hour, "lifetime of the ServiceAccount token (renew it before then: run this again and apply the output; eastwest reconnects with the new token)")
	fs.StringVar(&opts.Context, "context", "", "the kubeconfig context of the member cluster (default: the current context)")
	fs.StringVar(&opts.Server, "server", "", "the member's API server address as the control plane reaches it, https://HOST[:PORT] (default: the kubeconfig's)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: xds create-remote-secret --kubeconfig FILE [--context NAME] [--server https://HOST:PORT] --name ID [flags] | kubectl apply -f - (in the control plane's cluster)")
		fs.PrintDefaults()
	}
	if code, ok := parseNoArgs(fs, args, stderr, ""); !ok {
		return code
	}
	if *kubeconfig == "" || opts.Member == "" {
		fs.Usage()
		fmt.Fprintln(stderr, "\nxds create-remote-secret: --kubeconfig and --name are required")
		return 2
	}
	admin, err := clientcmd.LoadFromFile(*kubeconfig)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret, err := source.RemoteSecret(ctx, admin, opts)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	out, err := yaml.Marshal(secret)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	fmt.Fprintf(stdout, "# Remote secret for member cluster %s: apply it in the control plane's cluster.\n", opts.Member)
	_, _ = stdout.Write(out)
	return 0
}
