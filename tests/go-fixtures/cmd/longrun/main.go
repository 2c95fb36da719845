// longrun: for attach by PID. Does periodic work (a ticker, goroutines spawned each
// tick, a channel round trip) until SIGTERM, SIGINT or EOF on stdin, then stops
// the trace and exits 0. Prints "ready PID" on stderr once running.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"tracer.test/gofixtures/internal/fixture"
)

func worker(id int, in <-chan int, out chan<- int) {
	for v := range in {
		out <- v + id
	}
}

func tick(n int, wg *sync.WaitGroup) {
	defer wg.Done()
	time.Sleep(time.Millisecond)
	sink += n
}

var sink int

func main() {
	fixture.Start()
	stop := make(chan struct{}, 2)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		stop <- struct{}{}
	}()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop <- struct{}{}
	}()
	in, out := make(chan int), make(chan int)
	go worker(1, in, out)
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	fmt.Fprintf(os.Stderr, "ready %d\n", os.Getpid())
	var wg sync.WaitGroup
	for n := 0; ; n++ {
		select {
		case <-stop:
			wg.Wait()
			close(in)
			fixture.Done()
			return
		case <-ticker.C:
			wg.Add(1)
			go tick(n, &wg)
			in <- n
			<-out
		}
	}
}
