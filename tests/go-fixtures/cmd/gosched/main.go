// gosched: goroutines that yield with runtime.Gosched in a loop.
package main

import (
	"runtime"
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

func yielder(times int, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; i < times; i++ {
		runtime.Gosched()
	}
}

func main() {
	fixture.Start()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go yielder(50, &wg)
	}
	wg.Wait()
	fixture.Done()
}
