// gc: allocating goroutines and explicit runtime.GC() calls: the GC's workers,
// mark assists and stop-the-world pauses.
package main

import (
	"runtime"
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

type blob struct {
	next *blob
	data [64]byte
}

var keep []*blob

func allocate(n int, wg *sync.WaitGroup) {
	defer wg.Done()
	var head *blob
	for i := 0; i < n; i++ {
		head = &blob{next: head}
		if i%1000 == 0 {
			head = nil
		}
	}
	keep = append(keep, head)
}

func main() {
	fixture.Start()
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go allocate(200000, &wg)
		}
		runtime.GC()
		wg.Wait()
	}
	runtime.GC()
	fixture.Done()
}
