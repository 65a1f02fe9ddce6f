package gatewayapi

import (
	"testing"

	"sigs.k8s.io/gateway-api/pkg/features"
)

// Every feature eastwest advertises is one the conformance suite knows
// (a typo would advertise a feature nothing proves).
func TestSupportedFeaturesAreTheSuites(t *testing.T) {
	known := features.SetsToNamesSet(features.AllFeatures)
	for _, f := range SupportedFeatures {
		if !known.Has(f) {
			t.Errorf("SupportedFeatures names %q, which the conformance suite does not know", f)
		}
	}
}
