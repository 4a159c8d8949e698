package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerfleet/runnerfleet/messages"
)

// TestDemo runs the whole demo, as `make demo` does, on free ports.
func TestDemo(t *testing.T) {
	bin := t.TempDir()
	for name, pkg := range map[string]string{"worker": "..", "publisher": "../../publisher"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", name, err, out)
		}
	}
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{Bin: bin, Config: "../../../configs/local.yaml", FreePorts: true}, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, k := range expectedKinds {
		if sum.Received[string(k)] < 1 {
			t.Errorf("the worker received no %s message", k)
		}
	}
	if sum.Ticks["command"] != 1 || sum.Ticks["schedule"] < 1 {
		t.Errorf("ticks = %v, want 1 from the command and at least 1 from the schedule", sum.Ticks)
	}
	if sum.DeadLettered["invalid"] != 1 || sum.DeadLetterDepth != 1 {
		t.Errorf("dead-lettered %v, DLQ depth %d: want the one malformed body", sum.DeadLettered, sum.DeadLetterDepth)
	}
	if sum.Received[string(messages.KindUnknown)] != 1 {
		t.Errorf("unknown events received = %v, want 1", sum.Received[string(messages.KindUnknown)])
	}
	if sum.Emitted["Scheduled Event"] < 1 || sum.Emitted["EC2 Instance-terminate Lifecycle Action"] < 1 {
		t.Errorf("emulator emitted %v", sum.Emitted)
	}
	for _, want := range []string{"RunnerFleet demo summary", "lifecycle.terminate", "ticks handled:", sum.CommandID} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}

func TestDemoRefusesTakenPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = checkFree(l.Addr().(*net.TCPAddr).Port)
	if err == nil || !strings.Contains(err.Error(), "is taken") || !strings.Contains(err.Error(), "--free-ports") {
		t.Errorf("checkFree on a held port: %v", err)
	}
}
