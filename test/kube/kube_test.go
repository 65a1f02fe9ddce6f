package kube

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Start brings up working clusters with the CRDs served, and an apiserver
// stopped and started again keeps its data.
func TestStartStopRestart(t *testing.T) {
	cs := Start(t, "one", "two")
	ctx := context.Background()
	for _, c := range cs {
		if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if _, err := c.Client.Discovery().ServerResourcesForGroupVersion("multicluster.x-k8s.io/v1beta1"); err != nil {
			t.Fatalf("%s: MCS CRDs not served: %v", c.Name, err)
		}
	}
	c := cs[0]
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1Namespace, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.StopAPIServer()
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "kept", metav1.GetOptions{}); err == nil {
		t.Fatal("the apiserver answers while stopped")
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "kept", metav1.GetOptions{}); err != nil {
		t.Fatalf("data lost across a restart: %v", err)
	}
}

var corev1Namespace = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}
