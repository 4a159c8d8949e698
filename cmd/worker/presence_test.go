package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeChecker answers the fleet check from a table the test edits: a fleet absent from groups
// has no group; problems[f] is the check's error for a fleet whose group exists.
type fakeChecker struct {
	mu       sync.Mutex
	fleets   []string
	groups   map[string]bool
	problems map[string]error
	readErr  error
}

func (c *fakeChecker) CheckFleet(_ context.Context, name string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr != nil {
		return false, c.readErr
	}
	if !c.groups[name] {
		return false, nil
	}
	return true, c.problems[name]
}

func (c *fakeChecker) set(f func(c *fakeChecker)) { c.mu.Lock(); defer c.mu.Unlock(); f(c) }

// fakeSink counts FleetNotReady data by fleet.
type fakeSink struct {
	mu  sync.Mutex
	got map[string]int
}

func (s *fakeSink) PublishFleetNotReady(_ context.Context, fleet string, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[fleet]++
	return nil
}

func (s *fakeSink) count(fleet string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.got[fleet] }

// A fleet whose group does not exist does not stop the worker: it is reported, checked again on
// every sweep, and ready once its group exists and passes; a fleet whose group exists with a
// problem stops the start, every problem listed.
func TestPresence(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	chk := &fakeChecker{fleets: []string{"blue", "ghost"}, groups: map[string]bool{"blue": true}, problems: map[string]error{}}
	sink := &fakeSink{got: map[string]int{}}
	p := newPresence(chk, sink, chk.fleets, prometheus.NewRegistry(), logger)
	ctx := context.Background()
	ready := func(f string) float64 {
		var m dto.Metric
		if err := p.ready.WithLabelValues(f).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	count := func(s string) int { return strings.Count(logs.String(), s) }

	if err := p.start(ctx); err != nil {
		t.Fatalf("start with the group of ghost missing = %v; want the worker to start", err)
	}
	if ready("blue") != 1 || ready("ghost") != 0 {
		t.Fatalf("ready blue %v ghost %v; want 1 and 0", ready("blue"), ready("ghost"))
	}
	if count(`"level":"ERROR","msg":"fleet's auto scaling group does not exist`) != 1 || !strings.Contains(logs.String(), `"fleet":"ghost"`) {
		t.Fatalf("no error naming ghost at start:\n%s", logs.String())
	}

	p.recheck(ctx) // still missing: nothing new said, but the alarm's datum published
	if sink.count("ghost") != 1 || sink.count("blue") != 0 {
		t.Fatalf("FleetNotReady published ghost %d, blue %d times; want 1 and 0", sink.count("ghost"), sink.count("blue"))
	}
	chk.set(func(c *fakeChecker) { c.readErr = errors.New("Throttling") })
	p.recheck(ctx) // a failed read is said, and is no verdict
	if ready("ghost") != 0 || count("checking whether the fleet's auto scaling group exists failed") != 1 {
		t.Fatalf("after a failed read: ready %v, logs:\n%s", ready("ghost"), logs.String())
	}

	// The stack is created with a problem: said once however many sweeps see it, still not ready.
	chk.set(func(c *fakeChecker) {
		c.readErr = nil
		c.groups["ghost"] = true
		c.problems["ghost"] = errors.New(`drain: fleet "ghost": group g has no terminate lifecycle hook`)
	})
	p.recheck(ctx)
	p.recheck(ctx)
	if ready("ghost") != 0 || count("exists but fails the drain check") != 1 || !strings.Contains(logs.String(), "no terminate lifecycle hook") {
		t.Fatalf("a group with a problem: ready %v, logs:\n%s", ready("ghost"), logs.String())
	}

	published := sink.count("ghost")
	chk.set(func(c *fakeChecker) { delete(c.problems, "ghost") })
	p.recheck(ctx)
	if sink.count("ghost") != published {
		t.Errorf("FleetNotReady published for a ready fleet")
	}
	if ready("ghost") != 1 || count("passed the drain check: the worker serves this fleet") != 1 {
		t.Fatalf("a fixed group: ready %v, logs:\n%s", ready("ghost"), logs.String())
	}
	chk.set(func(c *fakeChecker) { c.readErr = errors.New("must not be called") })
	p.recheck(ctx) // nothing pending, the round of all not due: no call, nothing said
	if count("must not be called") != 0 {
		t.Errorf("a ready fleet was checked again before recheckAllEvery:\n%s", logs.String())
	}

	// A stack deleted while the worker runs: found at the next round of all the fleets.
	chk.set(func(c *fakeChecker) { c.readErr = nil; delete(c.groups, "blue") })
	p.mu.Lock()
	p.lastAll = time.Now().Add(-recheckAllEvery)
	p.mu.Unlock()
	p.recheck(ctx)
	if ready("blue") != 0 || sink.count("blue") != 1 || count("does not exist (any more)") != 1 {
		t.Fatalf("blue's group deleted: ready %v, published %d, logs:\n%s", ready("blue"), sink.count("blue"), logs.String())
	}
	p.recheck(ctx) // still gone: said once, published again
	if count("does not exist (any more)") != 1 || sink.count("blue") != 2 {
		t.Errorf("blue still gone: said %d times, published %d", count("does not exist (any more)"), sink.count("blue"))
	}

	// A problem of a fleet whose group exists stops the start, with every problem.
	bad := &fakeChecker{fleets: []string{"blue", "red", "ghost"}, groups: map[string]bool{"blue": true, "red": true},
		problems: map[string]error{"blue": errors.New("blue: no hook"), "red": errors.New("red: documents.status missing")}}
	err := newPresence(bad, sink, bad.fleets, prometheus.NewRegistry(), logger).start(ctx)
	if err == nil || !strings.Contains(err.Error(), "blue: no hook") || !strings.Contains(err.Error(), "red: documents.status missing") {
		t.Errorf("start with two fleets' problems = %v; want both listed", err)
	}

	// An Auto Scaling read that fails at start says nothing of the config: the worker starts, the
	// fleet not ready until a read succeeds.
	throttled := &fakeChecker{fleets: []string{"blue"}, groups: map[string]bool{"blue": true}, readErr: errors.New("Throttling: Rate exceeded")}
	tp := newPresence(throttled, sink, throttled.fleets, prometheus.NewRegistry(), logger)
	if err := tp.start(ctx); err != nil {
		t.Fatalf("start with reads throttled = %v; want the worker to start", err)
	}
	if _, pending := tp.pending["blue"]; !pending {
		t.Fatal("blue not kept not ready after a failed read")
	}
	throttled.set(func(c *fakeChecker) { c.readErr = nil })
	tp.recheck(ctx)
	if _, pending := tp.pending["blue"]; pending {
		t.Error("blue still not ready once its read succeeded")
	}
}
