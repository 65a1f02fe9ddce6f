package multicluster

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// A member's source never reads back the MCS EndpointSlices eastwest
// writes (the informer's label selector leaves them out at the
// apiserver), and reads every other slice.
func TestOwnEndpointSlicesAreNotReadBack(t *testing.T) {
	c := kube.Start(t, "a")[0]
	m := &member{Cluster: c, mcs: mustMCS(t, c)}
	m.namespace(t, "own")
	for name, labels := range map[string]map[string]string{
		"theirs": {discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
		"ours":   {discoveryv1.LabelServiceName: "derived-web", discoveryv1.LabelManagedBy: mcs.ControllerName},
	} {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "own", Name: name, Labels: labels}, AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}}}
		if _, err := c.Client.DiscoveryV1().EndpointSlices("own").Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var got []string
	synced := make(chan struct{}, 1)
	conn, err := source.NewConn("a", "test", 1, c.Config)
	if err != nil {
		t.Fatal(err)
	}
	src := source.NewKubeCluster(conn, slog.New(slog.NewTextHandler(io.Discard, nil)), func(evs []event.Event, _ []source.Problem) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			if es, ok := ev.Object.(*discoveryv1.EndpointSlice); ok {
				got = append(got, es.Name)
			}
		}
		select {
		case synced <- struct{}{}:
		default:
		}
	})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-synced:
	case <-time.After(30 * time.Second):
		t.Fatal("the source did not sync")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(got, "theirs") || slices.Contains(got, "ours") {
		t.Errorf("the source read slices %v; want theirs and not ours", got)
	}
}
