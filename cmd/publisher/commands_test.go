package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerfleet/runnerfleet/messages"
)

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func writeConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(path, []byte("fleets: [{name: blue, group: blue-asg}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTickDryRunPrintsAValidCommand(t *testing.T) {
	out, err := execute(t, "tick", "--fleet", "blue", "--config", writeConfig(t), "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Queue string          `json:"queue"`
		Group string          `json:"message_group_id"`
		Dedup string          `json:"message_deduplication_id"`
		Body  json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("dry run output is not JSON: %v\n%s", err, out)
	}
	if got.Queue != "runnerfleet-control.fifo" || got.Group != "blue" || got.Dedup == "" {
		t.Errorf("dry run = %+v", got)
	}
	m, err := messages.Parse(got.Body)
	if err != nil {
		t.Fatalf("the printed body does not parse: %v", err)
	}
	c := m.Payload.(*messages.Command)
	if c.Type != messages.CommandTick || c.Fleet != "blue" || c.ID != got.Dedup {
		t.Errorf("command = %+v", c)
	}
}

func TestRefusals(t *testing.T) {
	cfg := writeConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tick", "--fleet", "green", "--config", cfg, "--dry-run"}, `fleet "green" is not in the worker's configuration`},
		{[]string{"tick", "--config", cfg}, `required flag(s) "fleet" not set`},
		{[]string{"tick", "--fleet", "blue"}, "no configuration"},
		{[]string{"scale", "--fleet", "blue", "--config", cfg}, "pass --desired N"},
		{[]string{"drain", "--fleet", "blue"}, `required flag(s) "instance" not set`},
		{[]string{"cycle", "--fleet", "blue", "--abort", "--all"}, "--abort takes no"},
		{[]string{"update", "--fleet", "blue"}, `required flag(s) "properties" not set`},
	} {
		t.Setenv("RUNNERFLEET_CONFIG", "")
		t.Setenv("RUNNERFLEET_CONFIG_PARAMETER", "")
		_, err := execute(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range newRootCmd().Commands() {
		out, err := execute(t, c.Name(), "--help")
		says := c.Long
		if says == "" {
			says = c.Short
		}
		first, _, _ := strings.Cut(says, "\n")
		if err != nil || !strings.Contains(out, "Usage:") || !strings.Contains(out, first) {
			t.Errorf("%s --help: %v\n%s", c.Name(), err, out)
		}
	}
}
