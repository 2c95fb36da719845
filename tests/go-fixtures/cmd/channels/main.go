// channels: a pipeline over unbuffered and buffered channels, a select with a
// quit channel, and a closed channel that releases several waiters at once.
package main

import (
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

func produce(n int, out chan<- int) {
	for i := 0; i < n; i++ {
		out <- i
	}
	close(out)
}

func square(in <-chan int, out chan<- int) {
	for v := range in {
		out <- v * v
	}
	close(out)
}

func main() {
	fixture.Start()
	raw := make(chan int)
	squared := make(chan int, 4)
	go produce(200, raw)
	go square(raw, squared)

	quit := make(chan struct{})
	results := make(chan int)
	go func() {
		sum := 0
		for {
			select {
			case v, ok := <-squared:
				if !ok {
					results <- sum
					return
				}
				sum += v
			case <-quit:
				return
			}
		}
	}()
	<-results

	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			<-gate
		}(i)
	}
	close(gate)
	wg.Wait()
	close(quit)
	fixture.Done()
}
