// forking: for --follow-forks. The parent runs itself again as a child process
// (the same program, so a follower keeps tracing it) and waits for it; the
// child spawns a few goroutines and writes its own trace to $TRACER_GO_TRACE
// with ".child" appended.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

func work(n int, wg *sync.WaitGroup) {
	defer wg.Done()
	sum := 0
	for i := 0; i < n*1000; i++ {
		sum += i
	}
	_ = sum
}

func child() {
	if path := os.Getenv(fixture.TraceEnv); path != "" {
		os.Setenv(fixture.TraceEnv, path+".child")
	}
	fixture.Start()
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go work(i, &wg)
	}
	wg.Wait()
	fixture.Stop()
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		child()
		return
	}
	fixture.Start()
	cmd := exec.Command(os.Args[0], "child")
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "forking: child:", err)
		os.Exit(1)
	}
	fixture.Done()
}
