package interrupt_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/integration/gobuild"
	"github.com/runnerfleet/runnerfleet/messages"
)

// runPublisher runs the publisher binary (built once) with args; it returns its output and error.
func runPublisher(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(gobuild.Once(t, "github.com/runnerfleet/runnerfleet/cmd/publisher"), args...).CombinedOutput()
	return string(out), err
}

// publisher drain: a busy instance is drained and gone with no job killed and the desired
// capacity lowered; with --replace the desired capacity is kept; an instance of another group
// is refused with a clear message, by the publisher and by the worker.
func TestPublisherDrain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	f := e.group(groupSpec{name: "pub", desired: 3, min: 1, max: 4, terminateHook: true})
	f.Policy = fleet.Policy{MinUptime: time.Hour, ScaleInWindow: time.Hour}
	other := e.group(groupSpec{name: "other", desired: 1, min: 0, max: 1})
	e.start([]fleet.Settings{f}, nil)
	e.inService(f.GroupName, 3)
	foreign := e.inService(other.GroupName, 1)[0]

	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`region: us-east-1
endpoint: %s
loopback_only: true
queues:
  lifecycle: {name: %q}
  control: {name: %q}
fleets:
  - name: pub
    group: %s
    metrics_url: %q
`, e.w.Emulator.Endpoint, e.queue, e.ctl, f.GroupName, f.MetricsURL)), 0o600))

	// The simulator's job queue is shared by every runner: close the foreign runner's intake so
	// both jobs land on the fleet's instances (one each: concurrency 1).
	if _, err := e.w.Sim.Action(context.Background(), foreign, "stop-intake"); err != nil {
		t.Fatalf("closing the foreign runner's intake: %v", err)
	}
	jobs := e.jobs(6*time.Second, 2)
	var busy [2]string
	e.eventually("two busy instances", func() bool {
		st := e.w.Sim.State()
		busy[0], busy[1] = st.Jobs[jobs[0]].InstanceID, st.Jobs[jobs[1]].InstanceID
		return busy[0] != "" && busy[1] != ""
	})

	out, err := runPublisher(t, "drain", "--fleet", "pub", "--instance", busy[0], "--config", cfg)
	if err != nil {
		t.Fatalf("publisher drain: %v\n%s", err, out)
	}
	e.eventually("the first instance drained and gone", func() bool { return killed(e.log(), busy[0]) >= 0 })
	if d := e.desired(f.GroupName); d != 2 {
		t.Errorf("desired %d after drain, want 2", d)
	}

	// --wait follows it through its drain until it has left the group.
	out, err = runPublisher(t, "drain", "--fleet", "pub", "--instance", busy[1], "--replace", "--config", cfg,
		"--wait", "--table", e.tname, "--follow-interval", "100ms", "--timeout", "2m")
	if err != nil || !strings.Contains(out, busy[1]+": Terminating:Wait") || !strings.Contains(out, busy[1]+" has left its group") {
		t.Fatalf("publisher drain --replace --wait: %v\n%s", err, out)
	}
	e.eventually("the second instance drained and gone", func() bool { return killed(e.log(), busy[1]) >= 0 })
	if d := e.desired(f.GroupName); d != 2 {
		t.Errorf("desired %d after drain --replace, want 2 (unchanged)", d)
	}
	evs := e.log()
	for i, id := range busy {
		if k := killed(evs, id); k != 0 {
			t.Errorf("%s: %d jobs killed", id, k)
		}
		if c := of(evs, "hook.complete", id); len(c) != 1 || c[0].String("result") != "CONTINUE" {
			t.Errorf("%s: completions %v, want one CONTINUE by the drain", id, c)
		}
		if st := e.w.Sim.State().Jobs[jobs[i]].State; st != "finished" {
			t.Errorf("job on %s ended %s", id, st)
		}
	}
	e.inService(f.GroupName, 2) // one left of the first three, plus the replacement

	out, err = runPublisher(t, "drain", "--fleet", "pub", "--instance", foreign, "--config", cfg)
	want := fmt.Sprintf("instance %s belongs to Auto Scaling group %s, not to fleet \"pub\"", foreign, other.GroupName)
	if err == nil || !strings.Contains(out, want) {
		t.Errorf("foreign instance: err %v, output %q; want a refusal saying %q", err, out, want)
	}
	// The worker refuses it too, whoever sends it.
	c := messages.NewCommand("pub", messages.CommandDrain, time.Now())
	c.Drain.InstanceID = foreign
	err = e.ih.Handle(context.Background(), &messages.Message{Kind: messages.KindCommand, ID: c.ID, Payload: &c})
	if !messages.IsPermanent(err) || !strings.Contains(messages.Reason(err), want) {
		t.Errorf("worker: %v, want a refusal saying %q", err, want)
	}
	if _, in := e.members(other.GroupName)[foreign]; !in {
		t.Errorf("the foreign instance left its group")
	}
}
