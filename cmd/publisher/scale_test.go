package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

func scaleDryRun(t *testing.T, args ...string) *messages.Command {
	t.Helper()
	out, err := execute(t, append([]string{"scale", "--fleet", "blue", "--config", writeConfig(t), "--dry-run"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Group string          `json:"message_group_id"`
		Body  json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if got.Group != "blue" {
		t.Errorf("message group %q, want the fleet", got.Group)
	}
	m, err := messages.Parse(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Payload.(*messages.Command)
	if c.Type != messages.CommandScale || c.Fleet != "blue" || c.Scale == nil {
		t.Fatalf("command %+v", c)
	}
	return c
}

func TestScaleDryRunPinsAndResumes(t *testing.T) {
	c := scaleDryRun(t, "--desired", "3", "--for", "2h")
	if c.Scale.Desired == nil || *c.Scale.Desired != 3 || c.Scale.For != 2*time.Hour || c.Scale.Resume {
		t.Errorf("pin for 2h: %+v", c.Scale)
	}
	c = scaleDryRun(t, "--desired", "0")
	if c.Scale.Desired == nil || *c.Scale.Desired != 0 || c.Scale.For != 0 || c.Scale.Resume {
		t.Errorf("pin to 0 until resumed: %+v", c.Scale)
	}
	c = scaleDryRun(t, "--resume")
	if c.Scale.Desired != nil || !c.Scale.Resume {
		t.Errorf("resume: %+v", c.Scale)
	}
}

func TestScaleRefusesBadFlags(t *testing.T) {
	cfg := writeConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "pass --desired N"},
		{[]string{"--desired", "2", "--resume"}, "exclude each other"},
		{[]string{"--desired", "-1"}, "--desired -1 is negative"},
		{[]string{"--desired", "2", "--for", "0s"}, "must be positive"},
		{[]string{"--desired", "2", "--for", "-5m"}, "must be positive"},
		{[]string{"--resume", "--for", "1h"}, "--for goes with --desired"},
		{[]string{"--desired", "x"}, "invalid argument"},
	} {
		args := append([]string{"scale", "--fleet", "blue", "--config", cfg, "--dry-run"}, tc.args...)
		out, err := execute(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
		if strings.Contains(out, `"body"`) {
			t.Errorf("%v: printed a message although refused:\n%s", tc.args, out)
		}
	}
}
