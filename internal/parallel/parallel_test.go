package parallel

import (
	"sync/atomic"
	"testing"
)

// For calls fn exactly once per index, below and above the threshold.
func TestForCallsEachIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 5, 1000} {
		counts := make([]atomic.Int32, n)
		For(n, 10, func(i int) { counts[i].Add(1) })
		for i := range counts {
			if c := counts[i].Load(); c != 1 {
				t.Fatalf("n=%d: index %d called %d times", n, i, c)
			}
		}
	}
}
