// mutex: goroutines contending on one sync.Mutex, holding it across a little work,
// so that waiters park in sync.(*Mutex).lockSlow and are woken by the unlocker.
package main

import (
	"runtime"
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) work(rounds int, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; i < rounds; i++ {
		c.mu.Lock()
		for j := 0; j < 20000; j++ {
			c.n += j & 1
		}
		if i%8 == 0 {
			runtime.Gosched() // give a waiter the chance to park on the held lock
		}
		c.mu.Unlock()
	}
}

func main() {
	fixture.Start()
	c := &counter{}
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go c.work(200, &wg)
	}
	wg.Wait()
	fixture.Done()
}
