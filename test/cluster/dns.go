package cluster

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/eastwest-dev/eastwest/internal/manifest"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// coreDNS is the cluster's DNS as kubeadm installs it: CoreDNS as a
// Deployment behind the kube-dns Service on DNSServiceIP, kubeadm's
// Corefile (a test applies the project's, deploy/coredns, over it).
var coreDNS = fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health {
           lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
           pods insecure
           fallthrough in-addr.arpa ip6.arpa
           ttl 30
        }
        cache 30 {
           disable success cluster.local
           disable denial cluster.local
        }
        reload 2s
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: %s
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 1}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: %s
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
`, CoreDNSImage, DNSServiceIP)

// Apply applies a multi-document YAML to the cluster (server-side apply,
// strict field validation).
func (c *Cluster) Apply(ctx context.Context, yaml []byte) error {
	objs, err := manifest.Objects(yaml)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	for i := range objs {
		u := &objs[i]
		if _, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version); err != nil {
			mapper.Reset() // a kind installed since the mapper last looked
		}
		if err := manifest.Apply(ctx, dyn, mapper, "eastwest-test-cluster", u); err != nil {
			return fmt.Errorf("%s/%s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// InstallCRDs creates the CustomResourceDefinitions in docs and waits
// until they are Established and discoverable.
func (c *Cluster) InstallCRDs(ctx context.Context, docs ...[]byte) error {
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	return kube.CreateCRDs(ctx, c.Name, dyn, c.Client.Discovery(), docs...)
}

// startDNS deploys CoreDNS and waits for it to be ready.
func (c *Cluster) startDNS(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	return c.Apply(ctx, []byte(coreDNS))
}

// ConfigureDNS applies a CoreDNS configuration (the project's
// deploy/coredns: its Corefile and RBAC) and restarts CoreDNS on it: a
// mounted ConfigMap reaches a running pod only after the kubelet's next
// sync (up to a minute), and a test must not race it.
func (c *Cluster) ConfigureDNS(ctx context.Context, yaml []byte) error {
	if err := c.Apply(ctx, yaml); err != nil {
		return err
	}
	return c.Restart(ctx, "kube-system", "coredns")
}

// Restart rolls a Deployment's pods (as kubectl rollout restart does) and
// waits until the rollout is complete: every replica new and available,
// no old pod left.
func (c *Cluster) Restart(ctx context.Context, namespace, name string) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"eastwest.test/restarted-at":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := c.Client.AppsV1().Deployments(namespace).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("%s: restart %s/%s: %w", c.Name, namespace, name, err)
	}
	return c.WaitRolledOut(ctx, namespace, name)
}

// WaitRolledOut waits until a Deployment's rollout is complete (as
// kubectl rollout status does).
func (c *Cluster) WaitRolledOut(ctx context.Context, namespace, name string) error {
	var last string
	for {
		d, err := c.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			s := d.Status
			if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want {
				return nil
			}
			last = fmt.Sprintf("generation %d observed %d, %d updated, %d replicas, %d available of %d", d.Generation, s.ObservedGeneration, s.UpdatedReplicas, s.Replicas, s.AvailableReplicas, want)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s/%s not rolled out: %s (logs in %s)", c.Name, namespace, name, last, c.Dir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
