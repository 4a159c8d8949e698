package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/messages"
)

// records replays a sequence of cycle records, repeating the last one.
type records struct {
	mu   sync.Mutex
	seq  []cycle.Record
	next int
}

func (r *records) load(context.Context) (cycle.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.seq[min(r.next, len(r.seq)-1)]
	r.next++
	return rec, nil
}

func cycleAt(id string, st cycle.Status, p cycle.Progress, events ...string) cycle.Record {
	t0 := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	rec := cycle.Record{ID: id, Status: st, Progress: p, StartedAt: t0}
	for i, e := range events {
		rec.Events = append(rec.Events, cycle.Event{At: t0.Add(time.Duration(i+1) * time.Second), Text: e})
	}
	if st.Final() {
		rec.FinishedAt = t0.Add(2 * time.Minute)
		rec.Reason = events[len(events)-1]
	}
	return rec
}

func TestFollowCyclePrintsProgressAndOutcome(t *testing.T) {
	r := &records{seq: []cycle.Record{
		{ID: "older", Status: cycle.StatusSucceeded}, // the command not yet seen
		cycleAt("c1", cycle.StatusRunning, cycle.Progress{Total: 3}, "cycle started", "replaced 0 of 3, waiting for health 1"),
		cycleAt("c1", cycle.StatusRunning, cycle.Progress{Total: 3}, "cycle started", "replaced 0 of 3, waiting for health 1", "retiring i-1", "replaced 0 of 3, draining 1"),
		cycleAt("c1", cycle.StatusSucceeded, cycle.Progress{Total: 3, Replaced: 3, Floor: 2}, "cycle started", "replaced 0 of 3, waiting for health 1", "retiring i-1", "replaced 0 of 3, draining 1", "all 3 instances replaced"),
	}}
	var out bytes.Buffer
	if err := followCycle(context.Background(), &out, r.load, takeCheck{}, "blue", "c1", false, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"waiting for health 1", "draining 1", "retiring i-1", "cycle c1 of fleet blue succeeded after 2m0s (3 of 3 replaced): all 3 instances replaced"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "retiring i-1") != 1 || strings.Count(s, "waiting for the worker") != 1 {
		t.Errorf("an event printed twice:\n%s", s)
	}
	if lines := strings.Split(strings.TrimSpace(s), "\n"); !strings.HasPrefix(lines[len(lines)-1], "cycle c1 of fleet blue succeeded") {
		t.Errorf("the last line is not the outcome:\n%s", s)
	}
}

func TestFollowCycleFailsOnFailureAndAbort(t *testing.T) {
	for _, tc := range []struct {
		st       cycle.Status
		aborting bool
		wantErr  bool
	}{
		{cycle.StatusFailed, false, true},
		{cycle.StatusAborted, false, true},
		{cycle.StatusAborted, true, false},
	} {
		r := &records{seq: []cycle.Record{cycleAt("c1", tc.st, cycle.Progress{Total: 3, Replaced: 1}, "replacement not healthy")}}
		var out bytes.Buffer
		err := followCycle(context.Background(), &out, r.load, takeCheck{}, "blue", "c1", tc.aborting, time.Millisecond)
		if (err != nil) != tc.wantErr || !strings.Contains(out.String(), string(tc.st)) {
			t.Errorf("%s (aborting %v): err %v\n%s", tc.st, tc.aborting, err, out.String())
		}
	}
}

func TestCycleDryRunAndRefusals(t *testing.T) {
	t.Setenv("RUNNERFLEET_CONFIG", "")
	t.Setenv("RUNNERFLEET_CONFIG_PARAMETER", "")
	out, err := execute(t, "cycle", "--fleet", "blue", "--config", writeConfig(t), "--dry-run", "--all", "--surge", "2", "--max-unavailable", "1")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	m, err := messages.Parse(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Payload.(*messages.Command); c.Type != messages.CommandCycle || !c.Cycle.All || c.Cycle.Surge != 2 {
		t.Fatalf("command %+v %+v", c, c.Cycle)
	}
	for _, args := range [][]string{
		{"cycle", "--fleet", "blue", "--abort", "--all"},
		{"cycle", "--fleet", "blue", "--surge", "-1"},
		{"status", "--fleet", "blue", "--queue", "q"},
	} {
		if _, err := execute(t, args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// --wait says at once when the worker refused the command (with its reason), and gives up with
// exit status 3 when the worker never took it: before, both waited out the whole timeout and
// exited 1, like a failed cycle.
func TestFollowCycleStopsOnARefusalOrACommandNeverTaken(t *testing.T) {
	notYet := &records{seq: []cycle.Record{{ID: "older", Status: cycle.StatusSucceeded}}}
	now := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	refused := takeCheck{what: "cycle c1 of fleet blue", deadline: now.Add(time.Hour), now: func() time.Time { return now },
		fate: ledgerSays("cycle c0 of fleet blue is in progress", true)}
	var out bytes.Buffer
	err := followCycle(context.Background(), &out, notYet.load, refused, "blue", "c1", false, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "the worker refused cycle c1 of fleet blue: cycle c0 of fleet blue is in progress") || exitStatus(err) != 1 {
		t.Fatalf("refused: %v (exit %d)", err, exitStatus(err))
	}

	neverTaken := takeCheck{what: "cycle c1 of fleet blue", deadline: now.Add(-time.Second), now: func() time.Time { return now },
		fate: ledgerSays("", false)}
	err = followCycle(context.Background(), &out, notYet.load, neverTaken, "blue", "c1", false, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "has not taken cycle c1") || exitStatus(err) != exitUnknown {
		t.Fatalf("never taken: %v (exit %d)", err, exitStatus(err))
	}

	// Taken and accepted, still not in the record: wait on, until the timeout (outcome unknown).
	accepted := takeCheck{what: "cycle c1 of fleet blue", deadline: now.Add(-time.Second), now: func() time.Time { return now },
		fate: ledgerSays("", true)}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = followCycle(ctx, &out, notYet.load, accepted, "blue", "c1", false, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "gave up waiting") || exitStatus(err) != exitUnknown {
		t.Fatalf("timeout: %v (exit %d)", err, exitStatus(err))
	}
	// A failed cycle is exit status 1.
	failed := &records{seq: []cycle.Record{cycleAt("c1", cycle.StatusFailed, cycle.Progress{Total: 1}, "replacement not healthy")}}
	if err := followCycle(context.Background(), &out, failed.load, accepted, "blue", "c1", false, time.Millisecond); exitStatus(err) != 1 {
		t.Fatalf("failed cycle: %v (exit %d)", err, exitStatus(err))
	}
}

// --wait does not know the outcome when it cannot read the record (expired credentials) or when
// another cycle takes the fleet's record before this one is seen to end: exit status 3, never 1
// ("failed") while the cycle may be running on.
func TestFollowCycleUnknownOutcomes(t *testing.T) {
	now := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	accepted := takeCheck{what: "cycle c1 of fleet blue", deadline: now.Add(time.Hour), now: func() time.Time { return now },
		fate: ledgerSays("", true)}
	var out bytes.Buffer
	reads := 0
	expired := func(context.Context) (cycle.Record, error) {
		reads++
		return cycle.Record{}, errors.New("ExpiredTokenException: the security token included in the request is expired")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := followCycle(ctx, &out, expired, accepted, "blue", "c1", false, time.Millisecond)
	if err == nil || exitStatus(err) != exitUnknown || !strings.Contains(err.Error(), "ExpiredTokenException") {
		t.Fatalf("failed reads: %v (exit %d); want exit 3 naming the last failed read", err, exitStatus(err))
	}
	if reads < 2 || strings.Count(out.String(), "ExpiredTokenException") != 1 {
		t.Errorf("%d reads, output %q: want reads retried and the error printed once", reads, out.String())
	}

	out.Reset()
	moved := &records{seq: []cycle.Record{
		cycleAt("c1", cycle.StatusRunning, cycle.Progress{Total: 2}, "replacement i-1 launched"),
		cycleAt("token-c2", cycle.StatusRunning, cycle.Progress{Total: 2}),
	}}
	err = followCycle(context.Background(), &out, moved.load, accepted, "blue", "c1", false, time.Millisecond)
	if err == nil || exitStatus(err) != exitUnknown || !strings.Contains(err.Error(), "now holds cycle token-c2") {
		t.Fatalf("record taken by another cycle: %v (exit %d); want exit 3 at once", err, exitStatus(err))
	}
	// The same for an abort: it follows the cycle it aborts, never "waiting for the worker to take" it.
	out.Reset()
	moved.next = 0
	err = followCycle(context.Background(), &out, moved.load, accepted, "blue", "c1", true, time.Millisecond)
	if exitStatus(err) != exitUnknown || strings.Contains(out.String(), "waiting for the worker to take") {
		t.Fatalf("abort, record taken: %v (exit %d), output %q", err, exitStatus(err), out.String())
	}
}

// One of --surge and --max-unavailable alone would run with 0 for the other (the worker takes the
// fleet's defaults only when both are 0), so it is refused; so is a --timeout that ends at once.
func TestCycleFlagsThatWouldSurprise(t *testing.T) {
	for _, args := range [][]string{
		{"cycle", "--fleet", "blue", "--queue", "q", "--dry-run", "--max-unavailable", "2"},
		{"cycle", "--fleet", "blue", "--queue", "q", "--dry-run", "--surge", "3"},
		{"cycle", "--fleet", "blue", "--queue", "q", "--wait", "--timeout", "0s"},
		{"cycle", "--fleet", "blue", "--queue", "q", "--wait", "--timeout", "-5m"},
	} {
		if _, err := execute(t, args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	for _, args := range [][]string{
		{"cycle", "--fleet", "blue", "--queue", "q", "--dry-run", "--max-unavailable", "2", "--surge", "0"},
		{"cycle", "--fleet", "blue", "--queue", "q", "--dry-run"},
	} {
		if _, err := execute(t, args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// --follow sends nothing, so it takes none of the flags that shape a command.
func TestCycleFollowRefusesCommandFlags(t *testing.T) {
	for _, extra := range [][]string{{"--abort"}, {"--all"}, {"--surge", "1", "--max-unavailable", "1"}, {"--dry-run"}} {
		args := append([]string{"cycle", "--fleet", "blue", "--follow", "--config", writeConfig(t)}, extra...)
		if _, err := execute(t, args...); err == nil || !strings.Contains(err.Error(), "--follow sends nothing") {
			t.Errorf("cycle --follow %v: err %v, want it refused", extra, err)
		}
	}
}
