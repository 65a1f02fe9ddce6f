package writeback

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
)

// Merging a computed route status keeps other controllers' parents, keeps
// a condition's transition time while its status holds, moves it when the
// status flips, drops eastwest's parents it no longer computes, and says
// "unchanged" when there is nothing to write.
func TestMergeParents(t *testing.T) {
	then, now := time.Unix(1000, 0).UTC(), time.Unix(2000, 0).UTC()
	parent := func(name string, ctrl gwapiv1.GatewayController, status metav1.ConditionStatus, at time.Time) gwapiv1.RouteParentStatus {
		return gwapiv1.RouteParentStatus{ParentRef: gwapiv1.ParentReference{Name: gwapiv1.ObjectName(name)}, ControllerName: ctrl,
			Conditions: []metav1.Condition{{Type: "Accepted", Status: status, Reason: "R", ObservedGeneration: 3, LastTransitionTime: metav1.NewTime(at)}}}
	}
	computed := func(names ...string) *gwapiv1.RouteStatus {
		rs := &gwapiv1.RouteStatus{}
		for _, n := range names {
			p := parent(n, gatewayapi.ControllerName, metav1.ConditionTrue, time.Time{})
			p.Conditions[0].LastTransitionTime = metav1.Time{}
			p.Conditions[0].ObservedGeneration = 0
			rs.Parents = append(rs.Parents, p)
		}
		return rs
	}
	other := parent("theirs", "example.com/other", metav1.ConditionTrue, then)
	tests := map[string]struct {
		cur     gwapiv1.RouteStatus
		want    *gwapiv1.RouteStatus
		changed bool
		check   func(t *testing.T, got gwapiv1.RouteStatus)
	}{
		"unchanged: nothing to write": {
			cur:  gwapiv1.RouteStatus{Parents: []gwapiv1.RouteParentStatus{other, parent("gw", gatewayapi.ControllerName, metav1.ConditionTrue, then)}},
			want: computed("gw"),
		},
		"a flip moves the transition time, others' parents stay": {
			cur:     gwapiv1.RouteStatus{Parents: []gwapiv1.RouteParentStatus{other, parent("gw", gatewayapi.ControllerName, metav1.ConditionFalse, then)}},
			want:    computed("gw"),
			changed: true,
			check: func(t *testing.T, got gwapiv1.RouteStatus) {
				if len(got.Parents) != 2 || got.Parents[0].ControllerName != "example.com/other" || !got.Parents[1].Conditions[0].LastTransitionTime.Time.Equal(now) {
					t.Errorf("got %+v", got.Parents)
				}
			},
		},
		"a parent eastwest no longer computes goes": {
			cur:     gwapiv1.RouteStatus{Parents: []gwapiv1.RouteParentStatus{parent("old", gatewayapi.ControllerName, metav1.ConditionTrue, then), other}},
			want:    computed(),
			changed: true,
			check: func(t *testing.T, got gwapiv1.RouteStatus) {
				if len(got.Parents) != 1 || got.Parents[0].ControllerName != "example.com/other" {
					t.Errorf("got %+v", got.Parents)
				}
			},
		},
		"a new parent gets now and the generation": {
			want:    computed("gw"),
			changed: true,
			check: func(t *testing.T, got gwapiv1.RouteStatus) {
				c := got.Parents[0].Conditions[0]
				if !c.LastTransitionTime.Time.Equal(now) || c.ObservedGeneration != 3 {
					t.Errorf("got %+v", c)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, changed := mergeParents(tc.cur, tc.want, 3, now)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v (%+v)", changed, tc.changed, got)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}
