package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

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
