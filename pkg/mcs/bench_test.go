package mcs

import (
	"fmt"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/eastwest-dev/eastwest/pkg/event"
)

const (
	benchClusters  = 10
	benchServices  = 1000
	benchEndpoints = 100
)

// benchEvents builds the inputs of a ClusterSet in which every cluster
// exports every service with benchEndpoints endpoints in one slice.
func benchEvents() []event.Event {
	var evs []event.Event
	for c := range benchClusters {
		member := fmt.Sprintf("cluster-%d", c)
		evs = append(evs, event.Event{Member: member, Op: event.OpUpsert, Object: namespace("ns")})
		for s := range benchServices {
			name := fmt.Sprintf("svc-%d", s)
			evs = append(evs,
				event.Event{Member: member, Op: event.OpUpsert, Object: service("ns", name, port("http", 80), port("grpc", 90))},
				event.Event{Member: member, Op: event.OpUpsert, Object: export("ns", name, time.Duration(c)*time.Second)},
				event.Event{Member: member, Op: event.OpUpsert, Object: benchSlice(name, c, 0)},
			)
		}
	}
	return evs
}

func benchSlice(svc string, cluster, generation int) *discoveryv1.EndpointSlice {
	es := slice("ns", svc+"-abcde", svc, 0, "http", "grpc")
	es.Endpoints = make([]discoveryv1.Endpoint, benchEndpoints)
	for i := range es.Endpoints {
		es.Endpoints[i] = discoveryv1.Endpoint{
			Addresses: []string{fmt.Sprintf("10.%d.%d.%d", cluster, i, generation%250)},
			Zone:      ptr.To("zone-a"),
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr.To(true),
			},
		}
	}
	es.ResourceVersion = fmt.Sprint(generation)
	return es
}

// BenchmarkMerge measures a full merge of 10 clusters x 1000 services x 100
// endpoints from raw events, and the cost of one EndpointSlice changing
// afterwards (Apply + Flush). The second must be at least 1000x cheaper.
func BenchmarkMerge(b *testing.B) {
	evs := benchEvents()
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s := NewStore(Options{})
			for _, ev := range evs {
				if err := s.Apply(ev); err != nil {
					b.Fatal(err)
				}
			}
			if ch := s.Flush(); len(ch.Services) != benchServices {
				b.Fatalf("%d services changed", len(ch.Services))
			}
		}
	})
	b.Run("one-slice", func(b *testing.B) {
		s := NewStore(Options{})
		for _, ev := range evs {
			_ = s.Apply(ev)
		}
		s.Flush()
		// Two versions of one slice, alternated so that every op is a change.
		versions := []metav1.Object{benchSlice("svc-500", 3, 1), benchSlice("svc-500", 3, 2)}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := s.Apply(event.Event{Member: "cluster-3", Op: event.OpUpsert, Object: versions[i%2]}); err != nil {
				b.Fatal(err)
			}
			if ch := s.Flush(); len(ch.Services) != 1 {
				b.Fatalf("%d services changed", len(ch.Services))
			}
			i++
		}
	})
}
