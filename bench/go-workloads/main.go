// The Go workloads of `cargo xtask bench`: what tracer costs a Go program,
// against the kernel's trap floor and against Go's own runtime/trace.
//
//	goroutines -n N -k K: N pairs of goroutines, each pair playing K rounds of
//	    ping-pong over an unbuffered channel (every round parks and wakes both).
//	net -n N -k K: N loopback TCP connections, K echoed lines each (netpoller
//	    wakes).
//
// With BENCH_WAIT_GO set it prints "ready" on stderr and waits for a line on
// stdin before it starts (so a tracer can attach first); with -trace FILE it
// writes a runtime/trace of the measured part there. It prints
// {"seconds": S, "ops": N} on stdout.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/trace"
	"sync"
	"time"
)

func pingPong(rounds int) {
	ping, pong := make(chan int), make(chan int)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := range ping {
			pong <- v
		}
	}()
	for i := 0; i < rounds; i++ {
		ping <- i
		<-pong
	}
	close(ping)
	wg.Wait()
}

func goroutines(pairs, rounds int) int {
	var wg sync.WaitGroup
	for i := 0; i < pairs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pingPong(rounds)
		}()
	}
	wg.Wait()
	return pairs * rounds
}

func echo(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := conn.Write([]byte(line)); err != nil {
			return
		}
	}
}

func network(conns, lines int) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(conn)
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				fail(err)
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			for j := 0; j < lines; j++ {
				fmt.Fprintf(conn, "line %d\n", j)
				if _, err := r.ReadString('\n'); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	return conns * lines
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-workload:", err)
	os.Exit(1)
}

func main() {
	n := flag.Int("n", 100, "pairs or connections")
	k := flag.Int("k", 1000, "rounds or lines each")
	tracePath := flag.String("trace", "", "write a runtime/trace of the run here")
	flag.Parse()
	mode := flag.Arg(0)
	if os.Getenv("BENCH_WAIT_GO") != "" {
		fmt.Fprintln(os.Stderr, "ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	if *tracePath != "" {
		f, err := os.Create(*tracePath)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			fail(err)
		}
		defer trace.Stop()
	}
	start := time.Now()
	var ops int
	switch mode {
	case "goroutines":
		ops = goroutines(*n, *k)
	case "net":
		ops = network(*n, *k)
	default:
		fail(fmt.Errorf("unknown workload %q (goroutines or net)", mode))
	}
	fmt.Printf("{\"seconds\": %f, \"ops\": %d}\n", time.Since(start).Seconds(), ops)
}
