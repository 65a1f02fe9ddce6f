package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// replica is one control-plane replica's debug endpoint; name is its
// pod ("" for the one --debug-address names).
type replica struct {
	name string
	c    *debugClient
}

// replicaFlags adds the flags that make a debug command ask every replica
// of the control plane, as `istioctl proxy-status` asks every istiod:
// with --kubeconfig, the control plane's pods are found in --namespace by
// --selector and each one's debug endpoint is reached through a
// port-forward (the Kubernetes API's, as kubectl port-forward; the
// endpoint may listen on the pod's loopback). Without it, the one
// endpoint of --debug-address is asked. Every xDS client is connected to
// one replica: only the set of them is the whole picture.
func replicaFlags(fs *flag.FlagSet) func() ([]replica, func(), error) {
	client := debugFlags(fs)
	kubeconfig := fs.String("kubeconfig", "", "ask every replica of the control plane: its cluster's kubeconfig (the pods are found by --selector in --namespace, each debug endpoint reached by a port-forward)")
	kcontext := fs.String("context", "", "with --kubeconfig: its context (default: the current one)")
	namespace := fs.String("namespace", "eastwest-system", "with --kubeconfig: the control plane's namespace")
	selector := fs.String("selector", "app=eastwest", "with --kubeconfig: the label selector of the control plane's pods")
	return func() ([]replica, func(), error) {
		c, err := client()
		if err != nil {
			return nil, func() {}, err
		}
		if *kubeconfig == "" {
			return []replica{{c: c}}, func() {}, nil
		}
		// Finding the pods and opening the port-forwards take a minute at
		// most; the forwards then last until the returned stop.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return forwardReplicas(ctx, c, *kubeconfig, *kcontext, *namespace, *selector)
	}
}

// forwardReplicas port-forwards to the debug endpoint of every running
// control-plane pod; base is the debug client whose TLS settings each
// one's client takes. The returned function stops the port-forwards.
func forwardReplicas(ctx context.Context, base *debugClient, kubeconfig, kcontext, namespace, selector string) ([]replica, func(), error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{CurrentContext: kcontext}).ClientConfig()
	if err != nil {
		return nil, func() {}, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, func() {}, err
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, func() {}, fmt.Errorf("list the control plane's pods (%s in %s): %w", selector, namespace, err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, func() {}, err
	}
	stop := make(chan struct{})
	done := func() { close(stop) }
	var out []replica
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(p.Name).SubResource("portforward").URL()
		dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
		ready := make(chan struct{})
		fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(debugPort(&p))}, stop, ready, io.Discard, io.Discard)
		if err != nil {
			done()
			return nil, func() {}, err
		}
		failed := make(chan error, 1)
		go func() { failed <- fw.ForwardPorts() }()
		select {
		case <-ready:
		case err := <-failed:
			done()
			return nil, func() {}, fmt.Errorf("port-forward to pod %s: %w", p.Name, err)
		case <-time.After(30 * time.Second):
			done()
			return nil, func() {}, fmt.Errorf("port-forward to pod %s: not ready after 30s", p.Name)
		}
		ports, err := fw.GetPorts()
		if err != nil {
			done()
			return nil, func() {}, fmt.Errorf("port-forward to pod %s: %w", p.Name, err)
		}
		if len(ports) != 1 {
			done()
			return nil, func() {}, fmt.Errorf("port-forward to pod %s: %d local ports, want 1", p.Name, len(ports))
		}
		c := *base
		bu, _ := url.Parse(base.base)
		c.base = bu.Scheme + "://127.0.0.1:" + strconv.Itoa(int(ports[0].Local))
		out = append(out, replica{name: p.Name, c: &c})
	}
	if len(out) == 0 {
		done()
		return nil, func() {}, errors.New("no running pod of the control plane (" + selector + " in " + namespace + ")")
	}
	return out, done, nil
}

// debugPort is the port of a control-plane pod's debug endpoint: its
// --debug-address flag (the chart's container args), else the default.
func debugPort(p *corev1.Pod) int {
	for _, c := range p.Spec.Containers {
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			if v, ok := strings.CutPrefix(a, "--debug-address="); ok {
				if i := strings.LastIndex(v, ":"); i >= 0 {
					if n, err := strconv.Atoi(v[i+1:]); err == nil {
						return n
					}
				}
			}
		}
	}
	return 19000
}
