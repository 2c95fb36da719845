// Goroutines started every way `go` can start one. Each reports its id and
// its start PC, read from its g (`g.startpc`, at the offset given as the second
// argument); the run is written as a runtime/trace to the file named by the
// first. (runtime.Callers cannot say: it leaves out the `go f(x)` wrappers.)
package main

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// getg is in starts_amd64.s.
func getg() uintptr

// startpcOffset is g.startpc's offset, from DWARF.
var startpcOffset uintptr

type server struct{ n int }

func (s *server) run(wg *sync.WaitGroup) { defer wg.Done(); report(); s.n++ }

type worker interface{ work(wg *sync.WaitGroup) }

func (s *server) work(wg *sync.WaitGroup) { defer wg.Done(); report() }

func handle(x int, wg *sync.WaitGroup) {
	defer wg.Done()
	report()
	_ = x
}

func gen[T any](x T, wg *sync.WaitGroup) { defer wg.Done(); report(); _ = x }

func tiny(wg *sync.WaitGroup) { report(); wg.Done() }

var wg sync.WaitGroup

func noargs() { defer wg.Done(); report() }

var mu sync.Mutex

//go:noinline
func report() {
	start := *(*uintptr)(unsafe.Pointer(getg() + startpcOffset))
	buf := make([]byte, 64)
	header := strings.Fields(string(buf[:runtime.Stack(buf, false)]))
	mu.Lock()
	fmt.Printf("start %s %#x\n", header[1], start)
	mu.Unlock()
}

func main() {
	if len(os.Args) == 3 {
		offset, err := strconv.ParseUint(os.Args[2], 10, 64)
		if err != nil {
			panic(err)
		}
		startpcOffset = uintptr(offset)
		out, err := os.Create(os.Args[1])
		if err != nil {
			panic(err)
		}
		defer out.Close()
		if err := trace.Start(out); err != nil {
			panic(err)
		}
		defer trace.Stop()
	}
	fmt.Printf("anchor %#x\n", reflect.ValueOf(main).Pointer())
	wg.Add(10)
	go handle(1, &wg)
	go func() { defer wg.Done(); report() }()
	s := &server{}
	f := s.run
	go f(&wg)
	go s.run(&wg)
	go noargs()
	for i := 0; i < 1; i++ {
		go func(i int) { defer wg.Done(); report(); _ = i }(i)
	}
	go gen[int](2, &wg)
	var w worker = s
	go w.work(&wg)
	go tiny(&wg)
	time.AfterFunc(time.Millisecond, func() { defer wg.Done(); report() })
	wg.Wait()
}
