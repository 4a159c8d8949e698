package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/messages"
)

type fakeFinder map[string]string // instance → group

func (f fakeFinder) GroupOf(_ context.Context, id string) (string, string, bool, error) {
	g, ok := f[id]
	return g, "InService", ok, nil
}

func withFinder(t *testing.T, f fakeFinder) {
	t.Helper()
	old := newGroupFinder
	newGroupFinder = func(context.Context, *sendOptions, *config.Config) (groupFinder, error) { return f, nil }
	t.Cleanup(func() { newGroupFinder = old })
}

func TestDrainDryRunPrintsADrainCommand(t *testing.T) {
	out, err := execute(t, "drain", "--fleet", "blue", "--instance", "i-0123456789abcdef0", "--replace", "--config", writeConfig(t), "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	m, err := messages.Parse(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Payload.(*messages.Command)
	if c.Type != messages.CommandDrain || c.Drain.InstanceID != "i-0123456789abcdef0" || !c.Drain.Replace {
		t.Fatalf("command %+v", c)
	}
}

func TestDrainRefusesInstancesOutsideTheFleet(t *testing.T) {
	withFinder(t, fakeFinder{"i-0000000000000000b": "other-asg"})
	t.Setenv("RUNNERFLEET_CONFIG", "")
	t.Setenv("RUNNERFLEET_CONFIG_PARAMETER", "")
	cfg := writeConfig(t)
	for _, tc := range []struct {
		id, want string
	}{
		{"i-0000000000000000b", "refusing to drain: instance i-0000000000000000b belongs to Auto Scaling group other-asg, not to fleet \"blue\" (group blue-asg)"},
		{"i-0000000000000000c", "refusing to drain: instance i-0000000000000000c is not in any Auto Scaling group"},
		{"not-an-instance", "is not an EC2 instance id"},
	} {
		_, err := execute(t, "drain", "--fleet", "blue", "--instance", tc.id, "--config", cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.id, err, tc.want)
		}
	}
	_, err := execute(t, "drain", "--fleet", "blue", "--instance", "i-0000000000000000b", "--queue", "q")
	if err == nil || !strings.Contains(err.Error(), "needs the worker's configuration") {
		t.Errorf("without config: %v", err)
	}
}

// drain --wait follows the instance through its drain until no group lists it, printing each
// change of its state, phase or jobs once; a refused command ends it with the worker's reason;
// a timeout is an unknown outcome (exit 3), never a failure.
func TestFollowDrain(t *testing.T) {
	now := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	accepted := takeCheck{what: "drain d1", deadline: now.Add(time.Hour), now: func() time.Time { return now },
		fate: ledgerSays("", true)}
	seq := []drainSight{
		{state: "InService", found: true},
		{state: "Terminating:Wait", found: true, drain: &drainView{Phase: "watch", Jobs: 2}},
		{state: "Terminating:Wait", found: true, drain: &drainView{Phase: "watch", Jobs: 2}},
		{state: "Terminating:Wait", found: true, drain: &drainView{Phase: "unregister", Jobs: 0}},
		{found: false},
	}
	n := 0
	observe := func(context.Context) (drainSight, error) {
		s := seq[min(n, len(seq)-1)]
		n++
		return s, nil
	}
	var out bytes.Buffer
	if err := followDrain(context.Background(), &out, observe, accepted, "i-1", time.Millisecond); err != nil {
		t.Fatalf("follow: %v", err)
	}
	s := out.String()
	for _, want := range []string{"i-1: InService", "i-1: Terminating:Wait; drain watch, 2 job(s) running", "drain unregister, 0 job(s)", "i-1 has left its group"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "drain watch") != 1 {
		t.Errorf("an unchanged look printed again:\n%s", s)
	}

	refused := takeCheck{what: "drain d1", deadline: now.Add(time.Hour), now: func() time.Time { return now },
		fate: ledgerSays("instance i-1 is in Standby", true)}
	standby := func(context.Context) (drainSight, error) { return drainSight{state: "Standby", found: true}, nil }
	if err := followDrain(context.Background(), &out, standby, refused, "i-1", time.Millisecond); err == nil || exitStatus(err) == exitUnknown || !strings.Contains(err.Error(), "Standby") {
		t.Errorf("refused drain: %v (exit %d); want the worker's reason, exit 1", err, exitStatus(err))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	stuck := func(context.Context) (drainSight, error) {
		return drainSight{state: "Terminating:Wait", found: true, drain: &drainView{Phase: "watch", Jobs: 1}}, nil
	}
	if err := followDrain(ctx, &out, stuck, accepted, "i-1", time.Millisecond); exitStatus(err) != exitUnknown {
		t.Errorf("timeout: %v (exit %d); want exit 3", err, exitStatus(err))
	}
}
