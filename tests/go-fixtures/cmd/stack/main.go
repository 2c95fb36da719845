// stack: goroutines that recurse deep enough to grow their stacks several times
// (each growth copies the stack: the 2->8->2 transitions the tracer must filter).
package main

import (
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

//go:noinline
func recurse(depth int) int {
	var pad [128]byte
	pad[depth%128] = byte(depth)
	if depth == 0 {
		return int(pad[0])
	}
	return recurse(depth-1) + int(pad[depth%128])
}

var sink int

func main() {
	fixture.Start()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(depth int) {
			defer wg.Done()
			sink += recurse(depth)
		}(20000 + i)
	}
	wg.Wait()
	fixture.Done()
}
