// Package gobuild builds a command of this module once per test binary, for the integration
// tests that run it as a process (the publisher, the worker, the drain worker).
package gobuild

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

type built struct {
	once sync.Once
	path string
	err  error
}

var (
	mu    sync.Mutex
	cache = map[string]*built{}
)

// Once returns the path of pkg (an import path, e.g.
// "github.com/runnerfleet/runnerfleet/cmd/publisher") built with `go build` into a temporary
// directory, building it at the first call of the test binary; a failed build fails tb, with the
// compiler's output, at every call.
func Once(tb testing.TB, pkg string) string {
	tb.Helper()
	mu.Lock()
	b := cache[pkg]
	if b == nil {
		b = &built{}
		cache[pkg] = b
	}
	mu.Unlock()
	b.once.Do(func() {
		name := path.Base(pkg)
		dir, err := os.MkdirTemp("", "runnerfleet-"+name+"-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		if out, err := exec.Command("go", "build", "-o", b.path, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}
