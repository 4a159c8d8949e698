package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/update"
)

func TestRenderStatus(t *testing.T) {
	at := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	st := Status{
		Fleet: "blue", Group: "blue-asg", At: at, Desired: 3, Min: 1, Max: 4, CurrentTemplate: "lt-0new", CurrentVersion: "2",
		Pinned:       &StatusPin{Desired: 3, Issuer: "alice"},
		LastDecision: at.Add(-30 * time.Second), LastReason: "steady: 3 busy of 3", LastAction: "steady", LastDesired: new(3),
		Instances: []StatusInstance{
			{ID: "i-aaa", State: "InService", Template: "lt-0new", Version: "2", Intake: "open", Jobs: 1, Capacity: 4, Age: time.Hour, Scraped: at.Add(-20 * time.Millisecond)},
			{ID: "i-bbb", State: "InService", Template: "lt-0new", Version: "1", Intake: "rejected", Jobs: 0, Capacity: 0, Age: 2 * time.Hour, Scraped: at},
			{ID: "i-ccc", State: "Terminating:Wait", Template: "lt-0old", Version: "2", Intake: "closed (draining)", Jobs: -1, Capacity: -1, Age: 3 * time.Hour},
		},
		Drains: []StatusDrain{{InstanceID: "i-ccc", Phase: "watch", Age: 90 * time.Second, Jobs: 1}},
		Cycle: &cycle.Record{ID: "c1", Trigger: "command", Status: cycle.StatusRunning, StartedAt: at.Add(-5 * time.Minute),
			Progress: cycle.Progress{Total: 2, Replaced: 0, Draining: 1, Serving: 1, Floor: 2},
			Events:   []cycle.Event{{At: at.Add(-time.Minute), Text: "retiring i-ccc (serving): its drain runs"}}},
		Update: &update.Record{CommandID: "u1", Stack: "blue-stack", Phase: update.PhaseDone, Outcome: update.OutcomeSucceeded, StartedAt: at.Add(-time.Hour)},
	}
	var out bytes.Buffer
	renderStatus(&out, st)
	s := out.String()
	for _, want := range []string{
		"desired 3  min 1  max 4  launch template version 2 (lt-0new)", "pinned: at 3 by alice", "2 of lt-0old", "last decision 30s ago (steady, desired 3): steady: 3 busy of 3",
		"i-bbb", "rejected", "closed (draining)", "Terminating:Wait",
		"drains in progress", "watch", "1m30s",
		"cycle c1 (command) in progress", "replaced 0 of 2, draining 1", "retiring i-ccc",
		"update u1 of stack blue-stack: succeeded",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("status lacks %q:\n%s", want, s)
		}
	}
}

// A cycle that ended with the undo of its surge pending says so, and until when; a step in flight
// says who holds the fleet until when (a claim that has lapsed is not shown).
func TestStatusShowsAPendingUndoAndAClaim(t *testing.T) {
	at := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	st := Status{Fleet: "blue", At: at, Cycle: &cycle.Record{ID: "c1", Trigger: "command", Status: cycle.StatusAborted,
		StartedAt: at.Add(-5 * time.Minute), FinishedAt: at.Add(-time.Minute), Reason: "aborted by alice", UndoPending: true,
		Claim: &cycle.Claim{Owner: "ecs-task/abc-123", Until: at.Add(30 * time.Second)}}}
	var out bytes.Buffer
	renderStatus(&out, st)
	for _, want := range []string{"cycle c1 (command) aborted", "the undo of its surge is pending", "until 2026-11-27T18:09:00Z",
		"a step in flight, claimed by ecs-task/abc-123 until 2026-11-27T18:00:30Z"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	st.At = at.Add(time.Minute)
	out.Reset()
	renderStatus(&out, st)
	if strings.Contains(out.String(), "claimed by") {
		t.Errorf("status shows a lapsed claim:\n%s", out.String())
	}
}

// An instance a notice marked shows what the worker's tick counts: a spot interruption or a
// rebalance recommendation that stopped intake offers nothing, though its runner still answers
// with its capacity; a recommendation only reported leaves intake open and says so.
func TestMarkedIntakeIsWhatTheTickCounts(t *testing.T) {
	for _, tc := range []struct {
		mark         interrupt.Mark
		intake       string
		wantCapacity int
	}{
		{interrupt.Mark{SpotInterrupted: true, IntakeStopped: true}, "stopped (spot interruption)", 0},
		{interrupt.Mark{RebalanceRecommended: true, IntakeStopped: true}, "stopped (rebalance recommendation)", 0},
		{interrupt.Mark{RebalanceRecommended: true}, "open (rebalance recommended)", 4},
		{interrupt.Mark{}, "open", 4},
	} {
		intake, capacity := markedIntake(tc.mark, "open", 4)
		if intake != tc.intake || capacity != tc.wantCapacity {
			t.Errorf("mark %+v: intake %q capacity %d; want %q %d", tc.mark, intake, capacity, tc.intake, tc.wantCapacity)
		}
	}
}

// --json gives ages in whole seconds (age_s), not Go's nanosecond durations.
func TestStatusJSONAgesAreSeconds(t *testing.T) {
	b, err := json.Marshal(Status{
		Instances: []StatusInstance{{ID: "i-aaa", Age: time.Hour, AgeSeconds: 3600}},
		Drains:    []StatusDrain{{InstanceID: "i-aaa", Age: 90 * time.Second, AgeSeconds: 90}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"age_s":3600`) || !strings.Contains(s, `"age_s":90`) || strings.Contains(s, `"age":`) {
		t.Errorf("status JSON %s: want age_s in seconds and no nanosecond age", s)
	}
}
