package startlog_test

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/runnerfleet/runnerfleet/cmd/worker/startlog"
)

// The worker logs with slog's JSON handler: the line it writes is read back.
func TestListenAddrReadsTheWorkersLine(t *testing.T) {
	var out bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&out, nil))
	logger.Info("config loaded", "listen", "127.0.0.1:9", "note", startlog.Running)
	if addr, ok := startlog.ListenAddr(out.Bytes()); ok {
		t.Fatalf("found %q in a line of another message", addr)
	}
	logger.Info(startlog.Running, "listen", "127.0.0.1:41234", "fleets", 2)
	logger.Info(startlog.Running, "listen", "127.0.0.1:1")
	addr, ok := startlog.ListenAddr(out.Bytes())
	if !ok || addr != "127.0.0.1:41234" {
		t.Fatalf("ListenAddr = %q, %v; want the first running line's 127.0.0.1:41234\n%s", addr, ok, out.String())
	}
}

// A line still being written is not read: the address may be cut short.
func TestListenAddrWaitsForACompleteLine(t *testing.T) {
	var out bytes.Buffer
	slog.New(slog.NewJSONHandler(&out, nil)).Info(startlog.Running, "listen", "127.0.0.1:41234")
	line := out.Bytes()
	for _, partial := range [][]byte{line[:len(line)-1], line[:bytes.Index(line, []byte("41234"))+2]} {
		if addr, ok := startlog.ListenAddr(partial); ok {
			t.Errorf("ListenAddr(%q) = %q; want nothing until the line ends", partial, addr)
		}
	}
}
