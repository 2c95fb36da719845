// preempt: more tight loops (no calls, so no preemption checks) than CPUs, each
// for about 100 ms, so the scheduler must preempt them asynchronously (SIGURG).
package main

import (
	"sync"
	"sync/atomic"
	"time"

	"tracer.test/gofixtures/internal/fixture"
)

var stop int32

//go:noinline
func spin(wg *sync.WaitGroup, out *uint64) {
	defer wg.Done()
	var x uint64
	for atomic.LoadInt32(&stop) == 0 {
		for i := 0; i < 1<<20; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	*out = x
}

func main() {
	fixture.Start()
	var wg sync.WaitGroup
	outs := make([]uint64, 4)
	for i := range outs {
		wg.Add(1)
		go spin(&wg, &outs[i])
	}
	time.Sleep(150 * time.Millisecond)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	fixture.Done()
}
