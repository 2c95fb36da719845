// tcp: a loopback TCP echo server with one goroutine per connection and clients
// that send lines and wait for the echo, so reads park in the netpoller and are
// woken by it.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

// handlers counts the connection goroutines, so the trace stops only after
// every goroutine it saw created has ended.
var handlers sync.WaitGroup

func handle(conn net.Conn) {
	defer handlers.Done()
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

func serve(ln net.Listener, served chan<- struct{}) {
	defer close(served)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		handlers.Add(1)
		go handle(conn)
	}
}

func client(addr string, lines int, wg *sync.WaitGroup) {
	defer wg.Done()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for i := 0; i < lines; i++ {
		fmt.Fprintf(conn, "line %d\n", i)
		if _, err := r.ReadString('\n'); err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(1)
		}
	}
}

func main() {
	fixture.Start()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	served := make(chan struct{})
	go serve(ln, served)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go client(ln.Addr().String(), 20, &wg)
	}
	wg.Wait()
	ln.Close()
	<-served
	handlers.Wait()
	fixture.Done()
}
