package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls fn(i) for every i in [0, n): on one goroutine when n is
// below min (a small batch is cheaper without the goroutines), else on
// GOMAXPROCS goroutines taking the next index as they finish. fn must be
// safe to run concurrently for different i; For returns when all are done.
func For(n, min int, fn func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < min || n < 2 || workers < 2 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}
