package memberapi_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/test/memberapi"
)

// kubeconfigs writes one kubeconfig per simulated member into a new
// folder, as --kubeconfig-dir reads them.
func kubeconfigs(t testing.TB, sim *memberapi.Server, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := sim.WriteKubeconfigs(dir, names...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// eastwest runs unchanged against simulated members: its informers read
// an export of one member, and its write-back writes the ServiceImport,
// the derived Service (given a cluster IP by the simulator) and the MCS
// EndpointSlices into the other, over the same clients (protobuf bodies
// included) it uses with real apiservers; then its full passes find
// everything in place and write nothing.
func TestEastwestRunsAgainstSimulatedMembers(t *testing.T) {
	sim := memberapi.Start("m1", "m2")
	t.Cleanup(sim.Close)
	app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: kubeconfigs(t, sim, "m1", "m2"), WriteBack: true, Resync: time.Second})
	ctx := t.Context()
	for _, n := range []string{"m1", "m2"} {
		c, err := kubernetes.NewForConfig(sim.Config(n))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m1, err := kubernetes.NewForConfig(sim.Config("m1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "cart"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	port, ready := int32(8080), true
	if _, err := m1.DiscoveryV1().EndpointSlices("shop").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "cart-1", Labels: map[string]string{discoveryv1.LabelServiceName: "cart"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: &port}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mc1, err := mcsclient.NewForConfig(sim.Config("m1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc1.MulticlusterV1beta1().ServiceExports("shop").Create(ctx, &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "cart"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mc2, err := mcsclient.NewForConfig(sim.Config("m2"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := kubernetes.NewForConfig(sim.Config("m2"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "m2 imports shop/cart", func() error {
		si, err := mc2.MulticlusterV1beta1().ServiceImports("shop").Get(ctx, "cart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(si.Spec.IPs) != 1 || len(si.Status.Clusters) != 1 || si.Status.Clusters[0].Cluster != "m1" {
			return fmt.Errorf("spec.ips %v, clusters %v", si.Spec.IPs, si.Status.Clusters)
		}
		slices, err := m2.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelManagedBy + "=" + mcs.ControllerName})
		if err != nil {
			return err
		}
		if len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != 1 || slices.Items[0].Endpoints[0].Addresses[0] != "10.1.0.1" {
			return fmt.Errorf("MCS slices %+v", slices.Items)
		}
		return nil
	})
	// The members are written side by side: the export's conditions may
	// come after the import.
	testkit.Eventually(t, "m1's export has its conditions", func() error {
		se, err := mc1.MulticlusterV1beta1().ServiceExports("shop").Get(ctx, "cart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(se.Status.Conditions) == 0 {
			return fmt.Errorf("no conditions")
		}
		return nil
	})
	// A converged write-back writes nothing more: two full passes (the
	// resync) that find everything in place, as with real apiservers
	// (test/multicluster TestWriteBackIsIdempotent).
	before := app.WriteBack()
	testkit.Eventually(t, "two more full passes", func() error {
		if n := app.WriteBack().Passes - before.Passes; n < 2 {
			return fmt.Errorf("%d passes", n)
		}
		return nil
	})
	if n := app.WriteBack().Writes - before.Writes; n != 0 {
		t.Errorf("%d writes in passes that should have found everything in place", n)
	}
	for _, n := range []string{"m1", "m2"} {
		t.Logf("%s answered %v", n, sim.Member(n).Requests())
	}
}

func ptr[T any](v T) *T { return &v }
