// tree: a goroutine tree four deep (main -> main.root -> closure -> method value ->
// main.leaf), spawned with arguments (gowrap wrappers), closures and a method value.
package main

import (
	"sync"

	"tracer.test/gofixtures/internal/fixture"
)

type node struct {
	depth int
	wg    *sync.WaitGroup
}

// spawn is started as a method value: `go n.spawn()`.
func (n *node) spawn() {
	defer n.wg.Done()
	for i := 0; i < 2; i++ {
		n.wg.Add(1)
		go leaf(n.depth+1, i, n.wg)
	}
}

func leaf(depth, i int, wg *sync.WaitGroup) {
	defer wg.Done()
	sink += depth * i
}

var sink int

func root(id int, wg *sync.WaitGroup) {
	defer wg.Done()
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := &node{depth: 3, wg: wg}
		wg.Add(1)
		f := n.spawn
		go f()
	}()
}

func main() {
	fixture.Start()
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go root(i, &wg)
	}
	wg.Wait()
	fixture.Done()
}
