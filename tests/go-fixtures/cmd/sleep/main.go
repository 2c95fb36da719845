// sleep: goroutines in time.Sleep and on time.After, woken by the timers.
package main

import (
	"sync"
	"time"

	"tracer.test/gofixtures/internal/fixture"
)

func nap(d time.Duration, times int, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; i < times; i++ {
		time.Sleep(d)
	}
}

func main() {
	fixture.Start()
	var wg sync.WaitGroup
	for i := 1; i <= 4; i++ {
		wg.Add(1)
		go nap(time.Duration(i)*time.Millisecond, 10, &wg)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-time.After(20 * time.Millisecond)
	}()
	wg.Wait()
	fixture.Done()
}
