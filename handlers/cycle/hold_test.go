package cycle

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// Holding says why a cycle holds the capacity, for the scale decision's reason: a pending undo
// says so, and until when (runnerfleet_cycle_in_progress is 0 then: the cycle has ended).
func TestHoldingSaysWhy(t *testing.T) {
	r := newRig(t, newFakeGroup("2"), nil)
	now := r.clk.now()
	finished := now.Add(-2 * time.Minute)
	for _, c := range []struct {
		name string
		rec  Record
		want []string // "" : not held
	}{
		{"none", Record{}, nil},
		{"running", Record{Schema: recordSchema, ID: "c1", Status: StatusRunning}, []string{"cycle c1 is in progress"}},
		{"tail", Record{Schema: recordSchema, ID: "c1", Status: StatusRunning, Tail: true}, nil},
		{"succeeded", Record{Schema: recordSchema, ID: "c1", Status: StatusSucceeded, FinishedAt: finished}, nil},
		{"undo pending", Record{Schema: recordSchema, ID: "c1", Status: StatusAborted, FinishedAt: finished, UndoPending: true},
			[]string{"cycle c1 aborted", "the undo of its surge is pending", finished.Add(undoRetryFor).UTC().Format(time.RFC3339)}},
	} {
		r.st.rec["blue"] = c.rec
		why, err := r.h.Holding(context.Background(), "blue")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (why != "") != (c.want != nil) {
			t.Errorf("%s: holding %q; want held %v", c.name, why, c.want != nil)
		}
		for _, w := range c.want {
			if !strings.Contains(why, w) {
				t.Errorf("%s: holding %q; want it to say %q", c.name, why, w)
			}
		}
		if active, _ := r.h.Active(context.Background(), "blue"); active != (why != "") {
			t.Errorf("%s: Active %v, holding %q", c.name, active, why)
		}
	}
}

// A record of a newer schema (a rolling deploy: new replicas write it, old ones read it) holds
// the capacity for this worker while a newer replica writes it, whatever the fields this worker
// knows say: here a failed cycle whose undo a field of the newer schema carries. Its ticks take
// no step and hold. Once no newer replica has written it for newerHoldFor (they are gone: a
// rollback), scaling is this worker's again rather than held for ever.
func TestARecordOfANewerSchemaHoldsTheCapacity(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	now := r.clk.now()
	body := `{"schema":` + strconv.Itoa(recordSchema+1) + `,"id":"c9","trigger":"command","status":"failed",` +
		`"started_at":"2026-11-27T17:30:00Z","updated_at":"` + now.Add(-time.Minute).Format(time.RFC3339) + `",` +
		`"finished_at":"2026-11-27T17:58:00Z","desired":3,"original_max":3,"old":["i-a","i-b","i-c"],` +
		`"undo_later":{"until":"2026-11-27T18:08:00Z"},"progress":{"total":3},"steps":9}`
	var rec Record
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.HoldsCapacity() {
		t.Fatal("the fields this worker knows say the record holds: the test needs one they do not")
	}
	r.st.rec["blue"], r.st.ver["blue"] = rec, 7
	ctx := context.Background()
	why, err := r.h.Holding(ctx, "blue")
	if err != nil || !strings.Contains(why, "newer worker") || !strings.Contains(why, "c9") {
		t.Fatalf("Holding = %q, %v; want it held, saying a newer worker's cycle c9 holds it", why, err)
	}
	holds, err := r.h.Advance(ctx, "blue", "tick-old")
	if err != nil || !holds {
		t.Fatalf("tick of an older worker: Advance = %v, %v; want it to hold, without error", holds, err)
	}
	if r.st.saveCount() != 0 || g.describeCount() != 0 {
		t.Fatalf("tick of an older worker: %d writes, %d describes; want none", r.st.saveCount(), g.describeCount())
	}
	r.clk.add(newerHoldFor)
	if holds, err := r.h.Active(ctx, "blue"); err != nil || holds {
		t.Fatalf("no newer write for %s: Active = %v, %v; want scaling this worker's again", newerHoldFor, holds, err)
	}
	// What this worker can read still holds, however old the last write.
	rec.Status, rec.FinishedAt = StatusRunning, time.Time{}
	r.st.rec["blue"] = rec
	if holds, err := r.h.Active(ctx, "blue"); err != nil || !holds {
		t.Fatalf("a running cycle of a newer schema: Active = %v, %v; want it held", holds, err)
	}
}

// A claim names the replica so that it leads to a task: the ECS task from the container's
// metadata URI (no call to it), else host name and process id.
func TestDefaultOwnerNamesTheTask(t *testing.T) {
	t.Setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/a8585b2d6d5c4f9fb2a9ad12c5a1b6f1-3016447389")
	if got, want := DefaultOwner(), "ecs-task/a8585b2d6d5c4f9fb2a9ad12c5a1b6f1-3016447389"; got != want {
		t.Errorf("DefaultOwner in an ECS task = %q; want %q", got, want)
	}
	t.Setenv("ECS_CONTAINER_METADATA_URI_V4", "")
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	want := host + ":" + strconv.Itoa(os.Getpid())
	if got := DefaultOwner(); got != want {
		t.Errorf("DefaultOwner outside ECS = %q; want %q", got, want)
	}
	h, err := New(Config{Fleets: []FleetConfig{{Settings: fleet.Settings{Name: "blue", GroupName: "grp"}}}},
		Deps{Group: newFakeGroup("2"), Health: &fakeHealth{}, State: newFakeStore(), Registerer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if h.Owner() != want {
		t.Errorf("Owner by default = %q; want %q", h.Owner(), want)
	}
}
