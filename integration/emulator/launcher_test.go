package emulator_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

func launcherPath(t *testing.T) string {
	t.Helper()
	root, err := emulator.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "integration", "emulator", "launcher.py")
}

func TestLauncherRefusesAnotherMotoVersion(t *testing.T) {
	t.Parallel()
	py, err := emulator.Python()
	if err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fake, "moto"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "moto", "__init__.py"), []byte("__version__ = \"5.3.0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, launcherPath(t), "--port", "1")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+fake)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err == nil || !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("launcher with moto 5.3.0 exited with %v, want a non-zero exit; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "5.3.0") || !strings.Contains(string(out), "5.2.1") {
		t.Fatalf("launcher's refusal does not name both versions:\n%s", out)
	}
}

func TestLauncherRefusesNonLoopbackAddresses(t *testing.T) {
	t.Parallel()
	py, err := emulator.Python()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--port", "1", "--host", "0.0.0.0"},
		{"--port", "1", "--runnersim", "http://10.0.0.5:9252"},
	} {
		out, err := exec.Command(py, append([]string{launcherPath(t)}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "loopback") {
			t.Fatalf("launcher %v: err %v, output:\n%s\nwant a refusal naming loopback", args, err, out)
		}
	}
}

func TestTransitionLogAppendsInOrder(t *testing.T) {
	t.Parallel()
	e := world(t)
	ctx := context.Background()
	first, err := e.AppendLog(ctx, "test.mark", map[string]any{"n": 1, "test": t.Name()})
	if err != nil {
		t.Fatalf("AppendLog: %v", err)
	}
	second, err := e.AppendLog(ctx, "test.mark", map[string]any{"n": 2, "test": t.Name()})
	if err != nil {
		t.Fatalf("AppendLog: %v", err)
	}
	if second.Seq <= first.Seq || first.Time.IsZero() {
		t.Fatalf("appended events %+v then %+v: want increasing seq and a time", first, second)
	}
	evs, err := e.Log(ctx, first.Seq-1)
	if err != nil {
		t.Fatalf("Log: %v", err)
	}
	if len(evs) < 2 || evs[0].Seq != first.Seq || evs[0].Int("n") != 1 || evs[0].String("test") != t.Name() {
		t.Fatalf("Log(since %d) starts with %+v, want the first appended event", first.Seq-1, evs[:min(len(evs), 1)])
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Fatalf("log seq jumps from %d to %d", evs[i-1].Seq, evs[i].Seq)
		}
	}
	if _, err := e.AppendLog(ctx, "", nil); err == nil {
		t.Fatal("appending an event without a kind succeeded")
	}
}
