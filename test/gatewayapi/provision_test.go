package gatewayapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/deploy/crds"
	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/test/cluster"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// A Gateway of class eastwest gets its Envoys with nothing deployed by
// hand, on a real cluster: the write-back leader deploys them from the
// class's GatewayParameters (the Envoy image, an identity signed by the
// member's CA), the Envoy pod connects to eastwest over mutual TLS as the
// Gateway, turns Ready (the probe reads its /ready: LIVE once served),
// the Gateway's status.addresses is its Service's load balancer address,
// and a request from outside the cluster to that address on the
// listener's port reaches the route's backend pod through kube-proxy.
func TestProvisionedGateway(t *testing.T) {
	c := cluster.Start(t, "east")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	provisioning(ctx, t, "eastwest", 1, c)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, []byte(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: echo, namespace: shop, labels: {app: echo}}
spec:
  containers:
  - name: echo
    image: %[1]s
    imagePullPolicy: Never
    env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    ports: [{containerPort: 8080}]
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec: {selector: {app: echo}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: shop}
spec:
  gatewayClassName: eastwest
  listeners: [{name: web, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: shop}
spec:
  parentRefs: [{name: public}]
  rules: [{backendRefs: [{name: echo, port: 80}]}]
`, cluster.EchoImage))); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	pods := c.WaitPodsReady(t, "shop", "gateway.networking.k8s.io/gateway-name=public", 1)
	t.Logf("the Gateway's Envoy pod %s Ready %v after the Gateway was created", pods[0].Name, time.Since(start).Round(time.Millisecond))
	gwc, err := gwclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	var address string
	testkit.Eventually(t, "the Gateway's address: its Service's load balancer", func() error {
		g, err := gwc.GatewayV1().Gateways("shop").Get(ctx, "public", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(g.Status.Addresses) != 1 {
			return fmt.Errorf("addresses %+v", g.Status.Addresses)
		}
		address = g.Status.Addresses[0].Value
		return nil
	})
	if a, err := netip.ParseAddr(address); err != nil || !c.LoadBalancerPool.Contains(a) {
		t.Errorf("the Gateway's address %s, want its Service's load balancer address in %s", address, c.LoadBalancerPool)
	}
	// From the test's namespace, as a client outside the cluster.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	testkit.Eventually(t, "a request to the Gateway's address reaching the echo pod", func() error {
		resp, err := hc.Get("http://" + address + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "echo" {
			return fmt.Errorf("%d %q", resp.StatusCode, b)
		}
		return nil
	})
}

// provisioning makes the first of the clusters ready for Gateways of
// class, with every one of them a member: in each, the MCS, Gateway API
// and GatewayParameters CRDs and Envoy's image; the control plane in the
// test, reading and writing back to every cluster, on the host's end of
// the first's node link (where its pods reach it) serving mutual TLS; in
// the first, the member's CA as the issuer of the Envoys' identities
// (eastwest-system/member-ca) and a GatewayClass whose GatewayParameters
// (eastwest-system/envoys) deploy replicas Envoys per Gateway with small
// requests (many Gateways on a 2-CPU node).
func provisioning(ctx context.Context, t *testing.T, class string, replicas int, clusters ...*cluster.Cluster) *controlplane.App {
	t.Helper()
	gw, err := kube.GatewayCRDs()
	if err != nil {
		t.Fatal(err)
	}
	members := t.TempDir()
	for _, c := range clusters {
		if err := c.Import(cluster.DebianImages(t)); err != nil {
			t.Fatal(err)
		}
		if err := c.InstallCRDs(ctx, append(append(kube.MCSCRDs(), gw...), crds.GatewayParametersCRD)...); err != nil {
			t.Fatal(err)
		}
		kc, err := os.ReadFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		testkit.WriteFile(t, filepath.Join(members, c.Name+".yaml"), string(kc))
	}
	c := clusters[0]
	ca := cptest.NewCA(t)
	srv := ca.ServerAt(t, c.Node.HostIP)
	app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: members, WriteBack: true, Resync: 5 * time.Second, ProvisionGateways: true,
		XDSAddress: c.Node.HostIP + ":0", XDSTLS: controlplane.TLSFiles{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.File}})
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eastwest-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	issuer := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "member-ca", Namespace: "eastwest-system"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: caPEM, corev1.TLSPrivateKeyKey: ca.KeyPEM(t)}}
	if _, err := c.Client.CoreV1().Secrets("eastwest-system").Create(ctx, issuer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, []byte(fmt.Sprintf(`apiVersion: eastwest.io/v1alpha1
kind: GatewayParameters
metadata: {name: envoys, namespace: eastwest-system}
spec:
  replicas: %[3]d
  resources: {requests: {cpu: 10m, memory: 32Mi}}
  xds: {address: "%[2]s", serverName: localhost}
  identity: {issuerSecret: {namespace: eastwest-system, name: member-ca}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: %[1]s}
spec:
  controllerName: eastwest.io/gateway-controller
  parametersRef: {group: eastwest.io, kind: GatewayParameters, name: envoys, namespace: eastwest-system}
`, class, app.XDSAddr(), replicas))); err != nil {
		t.Fatal(err)
	}
	return app
}
