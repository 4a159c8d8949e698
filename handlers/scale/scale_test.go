package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
	"github.com/runnerfleet/runnerfleet/scaling"
)

const (
	fleetName = "docker"
	groupName = "runnerfleet-docker-asg"
	tickRule  = "arn:aws:events:eu-west-1:123456789012:rule/runnerfleet-docker-tick"
)

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

type rig struct {
	h     *Handler
	group *fakeGroup
	scr   *fakeScraper
	sink  *fakeSink
	store *fakeStore
	// hold, when set before rebuild, is the handler's Deps.Hold.
	hold *fakeHold
	reg  *prometheus.Registry
	logs *syncBuffer

	mu  sync.Mutex
	now time.Time
}

func (r *rig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *rig) advance(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = r.now.Add(d)
}

// newRig builds a handler over fakes; instances are InService, launched an hour before t0.
func newRig(t *testing.T, p fleet.Policy, ids ...string) *rig {
	t.Helper()
	r := &rig{group: &fakeGroup{}, scr: &fakeScraper{}, sink: &fakeSink{}, store: newFakeStore(), now: t0}
	r.group.state = GroupState{Desired: len(ids), Min: 0, Max: 20}
	for _, id := range ids {
		r.group.state.Members = append(r.group.state.Members, Member{
			Instance:  fleet.Instance{ID: id, State: fleet.StateInService, LaunchedAt: t0.Add(-time.Hour)},
			PrivateIP: "10.0.0.1",
		})
	}
	r.rebuild(t, p)
	return r
}

// rebuild makes a new handler over the same fakes: a worker restart.
func (r *rig) rebuild(t *testing.T, p fleet.Policy) {
	t.Helper()
	r.reg = prometheus.NewRegistry()
	r.logs = &syncBuffer{}
	var hold Hold
	if r.hold != nil {
		hold = r.hold
	}
	h, err := New(Config{
		Fleets:         []fleet.Settings{{Name: fleetName, GroupName: groupName, TickRule: tickRule, Policy: p}},
		PublishTimeout: 50 * time.Millisecond,
		Now:            r.clock,
	}, Deps{Group: r.group, Scraper: r.scr, Metrics: r.sink, State: r.store, Registerer: r.reg, Hold: hold},
		slog.New(slog.NewJSONHandler(r.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
}

func busy(jobs, capacity int) fleet.Instance {
	return fleet.Instance{Healthy: true, Capacity: capacity, RunningJobs: jobs, QueueStale: true}
}

func (r *rig) tick(t *testing.T, id string) {
	t.Helper()
	if err := r.h.Tick(context.Background(), fleetName, id); err != nil {
		t.Fatalf("tick %s: %v", id, err)
	}
}

func TestScaleOutWhenJobsQueue(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{}, "i-1", "i-2")
	for _, id := range []string{"i-1", "i-2"} {
		inst := busy(2, 2)
		inst.QueueSize, inst.QueueAge, inst.QueueStale = 4, 20*time.Second, false
		r.scr.set(id, inst)
	}
	r.tick(t, "tick-1")
	desired, terminated, protected, _ := r.group.snapshot()
	if desired != 4 {
		t.Errorf("desired = %d, want 4 (8 slots wanted: 4 running + 4 queued, 2 per instance)", desired)
	}
	if len(terminated) != 0 {
		t.Errorf("terminated %v while scaling out", terminated)
	}
	if !protected["i-1"] || !protected["i-2"] {
		t.Errorf("busy instances not protected: %v", protected)
	}
	fm, n := r.sink.last()
	if n != 1 || fm.DesiredCapacity != 4 || fm.ActiveJobs != 4 || fm.QueuedJobs != 4 || fm.InServiceInstances != 2 || fm.Fleet != fleetName {
		t.Errorf("published %d times, last %+v", n, fm)
	}
	if got := value(t, r.reg, "runnerfleet_fleet_desired_capacity", fleetName); got != 4 {
		t.Errorf("/metrics desired_capacity = %v, want 4", got)
	}
	lines := r.logs.lines(t, "scale decision")
	if len(lines) != 1 {
		t.Fatalf("%d decision log lines, want 1", len(lines))
	}
	if lines[0]["action"] != "scale_out" || !strings.Contains(fmt.Sprint(lines[0]["reason"]), "scale out") || lines[0]["observation"] == nil {
		t.Errorf("decision log line lacks its inputs or reason: %v", lines[0])
	}
}

func TestScaleInRemovesOnlyIdleAfterWindowAcrossRestart(t *testing.T) {
	t.Parallel()
	p := fleet.Policy{ScaleInWindow: 10 * time.Minute, MaxScaleInStep: 2}
	r := newRig(t, p, "i-busy", "i-idle1", "i-idle2")
	r.scr.set("i-busy", busy(1, 2))
	r.scr.set("i-idle1", busy(0, 2))
	r.scr.set("i-idle2", busy(0, 2))

	r.tick(t, "tick-1")
	if _, terminated, _, _ := r.group.snapshot(); len(terminated) != 0 {
		t.Fatalf("removed %v before the stabilization window", terminated)
	}
	if r.store.get(fleetName).Scaling.SpareSince.IsZero() {
		t.Fatal("stabilization start not stored")
	}

	// The worker restarts; the window must be remembered.
	r.rebuild(t, p)
	r.advance(11 * time.Minute)
	r.tick(t, "tick-2")
	desired, terminated, protected, _ := r.group.snapshot()
	if slices.Contains(terminated, "i-busy") {
		t.Fatal("a busy instance was terminated")
	}
	if len(terminated) == 0 {
		t.Fatal("no idle instance removed after the window")
	}
	for _, id := range terminated {
		if id != "i-idle1" && id != "i-idle2" {
			t.Errorf("terminated %s, not an idle instance", id)
		}
	}
	if !protected["i-busy"] {
		t.Error("busy instance not protected from scale-in")
	}
	if desired != 3-len(terminated) {
		t.Errorf("desired = %d after removing %d of 3", desired, len(terminated))
	}
}

func TestNoScaleInWhileRunnersUnknown(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{ScaleInWindow: time.Minute, MaxScaleInStep: 3}, "i-1", "i-2", "i-hung")
	r.scr.set("i-1", busy(0, 2))
	r.scr.set("i-2", busy(0, 2))
	// i-hung has no answer: the fake scraper reports it unknown (timeout).
	r.tick(t, "tick-1")
	r.advance(5 * time.Minute)
	r.tick(t, "tick-2")
	_, terminated, _, _ := r.group.snapshot()
	if len(terminated) != 0 {
		t.Fatalf("scaled in %v while a third of the fleet is unknown", terminated)
	}
	fm, _ := r.sink.last()
	if fm.UnknownInstances != 1 {
		t.Errorf("published UnknownInstances = %d, want 1", fm.UnknownInstances)
	}
	if got := value(t, r.reg, "runnerfleet_scale_unknown_scrapes_total", fleetName, "timeout"); got != 2 {
		t.Errorf("unknown_scrapes_total{reason=timeout} = %v, want 2", got)
	}
	lines := r.logs.lines(t, "scale decision")
	last := lines[len(lines)-1]
	if u, _ := last["unknown"].(map[string]any); u["i-hung"] != "timeout" {
		t.Errorf("decision log does not report the unknown runner: %v", last["unknown"])
	}
	if !strings.Contains(fmt.Sprint(last["reason"]), "unknown") {
		t.Errorf("reason does not say why no scale-in: %v", last["reason"])
	}
}

func TestFailedPublishNeverBlocksDecision(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"error", "hang"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, fleet.Policy{}, "i-1")
			r.scr.set("i-1", busy(2, 2))
			r.sink.mu.Lock()
			if mode == "error" {
				r.sink.err = errors.New("cloudwatch: throttled")
			} else {
				r.sink.block = true
			}
			r.sink.mu.Unlock()
			// Idle slots 2 make the policy want one more instance.
			r.rebuild(t, fleet.Policy{IdleSlots: 2})
			r.tick(t, "tick-1")
			if desired, _, _, _ := r.group.snapshot(); desired != 2 {
				t.Errorf("desired = %d, want 2: the decision must be applied whatever the publish does", desired)
			}
			if got := value(t, r.reg, "runnerfleet_scale_metric_publish_failures_total", fleetName); got != 1 {
				t.Errorf("metric_publish_failures_total = %v, want 1", got)
			}
		})
	}
}

func TestTickDecidedOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{IdleSlots: 2}, "i-1")
	r.scr.set("i-1", busy(2, 2))
	r.tick(t, "tick-1")
	r.tick(t, "tick-1") // redelivered
	_, _, _, calls := r.group.snapshot()
	if n := strings.Count(strings.Join(calls, ","), "describe"); n != 1 {
		t.Errorf("a redelivered tick described the group again (%d describes)", n)
	}
	if n := strings.Count(strings.Join(calls, ","), "set_desired"); n != 1 {
		t.Errorf("%d set_desired calls, want 1", n)
	}

	// Another worker saves between this one's Load and Save: this one must not apply.
	r.store.mu.Lock()
	r.store.beforeSave = func() {
		r.store.mu.Lock()
		defer r.store.mu.Unlock()
		r.store.versions[fleetName]++
	}
	r.store.mu.Unlock()
	r.scr.set("i-1", busy(2, 2))
	r.group.mu.Lock()
	r.group.state.Desired = 1 // the group shrank: the policy would scale out again
	r.group.mu.Unlock()
	_, publishedBefore := r.sink.last()
	r.tick(t, "tick-2")
	_, _, _, calls = r.group.snapshot()
	if n := strings.Count(strings.Join(calls, ","), "set_desired"); n != 1 {
		t.Errorf("the losing worker applied its decision (%d set_desired calls)", n)
	}
	if _, n := r.sink.last(); n != publishedBefore {
		t.Errorf("the losing worker published the tick's metrics too (%d publishes, was %d)", n, publishedBefore)
	}
	if got := value(t, r.reg, "runnerfleet_scale_skipped_ticks_total", "concurrent", fleetName); got != 1 {
		t.Errorf("skipped_ticks_total{cause=concurrent} = %v, want 1", got)
	}
}

// TestConcurrentWorkersOneDecision runs two handlers (two replicas) on the same tick at once.
func TestConcurrentWorkersOneDecision(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{IdleSlots: 2}, "i-1")
	r.scr.set("i-1", busy(2, 2))
	first := r.h
	r.rebuild(t, fleet.Policy{IdleSlots: 2}) // a second replica over the same group and table
	var wg sync.WaitGroup
	for _, h := range []*Handler{first, r.h} {
		wg.Go(func() {
			if err := h.Tick(context.Background(), fleetName, "tick-1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	_, _, _, calls := r.group.snapshot()
	if n := strings.Count(strings.Join(calls, ","), "set_desired"); n != 1 {
		t.Errorf("%d set_desired calls for one tick on two workers, want 1", n)
	}
}

func scaleCommand(t *testing.T, now time.Time, desired *int, resume bool, d time.Duration) *messages.Message {
	t.Helper()
	c := messages.NewCommand(fleetName, messages.CommandScale, now)
	c.Scale.Desired, c.Scale.Resume, c.Scale.For = desired, resume, d
	return &messages.Message{Kind: messages.KindCommand, ID: c.ID, Time: now, Payload: &c}
}

func TestPinHoldsCapacityThenResumes(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{ScaleInWindow: time.Minute}, "i-1", "i-2", "i-3")
	for _, id := range []string{"i-1", "i-2", "i-3"} {
		r.scr.set(id, busy(0, 2))
	}
	r.scr.set("i-3", busy(1, 2))
	five := 5
	if err := r.h.Handle(context.Background(), scaleCommand(t, r.clock(), &five, false, 0)); err != nil {
		t.Fatal(err)
	}
	if desired, _, _, _ := r.group.snapshot(); desired != 5 {
		t.Fatalf("desired = %d after pinning 5", desired)
	}
	r.group.mu.Lock()
	r.group.state.Desired = 4 // someone lowered it by hand; a redelivered pin must not re-decide
	r.group.mu.Unlock()
	pin5 := scaleCommand(t, r.clock(), &five, false, 0)
	pin5.Payload.(*messages.Command).ID = "redelivered"
	for range 2 {
		if err := r.h.Handle(context.Background(), pin5); err != nil {
			t.Fatalf("pin delivered twice: %v", err)
		}
	}
	if _, _, _, calls := r.group.snapshot(); strings.Count(strings.Join(calls, ","), "set_desired") != 2 {
		t.Errorf("set_desired calls %v: want one for each distinct pin command", calls)
	}
	// Idle for long: a pinned fleet keeps its capacity, and its ticks still scrape and report.
	calls := r.scr.calls
	for i := range 3 {
		r.advance(20 * time.Minute)
		r.tick(t, fmt.Sprintf("tick-%d", i))
	}
	if desired, terminated, _, _ := r.group.snapshot(); desired != 5 || len(terminated) != 0 {
		t.Fatalf("pinned fleet changed: desired %d, terminated %v", desired, terminated)
	}
	if r.scr.calls != calls+3 {
		t.Errorf("pinned ticks scraped %d times, want 3", r.scr.calls-calls)
	}
	if _, n := r.sink.last(); n != 5 {
		t.Errorf("published %d times, want 5: two pin ticks and three pinned ticks all report", n)
	}

	// Pin below the busy count: the two launches the fake group never made are cancelled
	// first, then only idle instances go.
	one := 1
	if err := r.h.Handle(context.Background(), scaleCommand(t, r.clock(), &one, false, 0)); err != nil {
		t.Fatal(err)
	}
	if desired, terminated, _, _ := r.group.snapshot(); desired != 3 || len(terminated) != 0 {
		t.Fatalf("pin 1: desired %d, terminated %v; want the 2 launches not made cancelled first (desired 3), nothing terminated", desired, terminated)
	}
	r.advance(time.Minute)
	r.tick(t, "tick-after-pin")
	_, terminated, _, _ := r.group.snapshot()
	if slices.Contains(terminated, "i-3") || len(terminated) != 2 {
		t.Errorf("pin 1 terminated %v, want the two idle instances and never busy i-3", terminated)
	}

	if err := r.h.Handle(context.Background(), scaleCommand(t, r.clock(), nil, true, 0)); err != nil {
		t.Fatal(err)
	}
	if r.store.get(fleetName).Pin != nil {
		t.Error("resume left the pin in place")
	}
}

func TestPinExpires(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{}, "i-1")
	r.scr.set("i-1", busy(0, 2))
	three := 3
	if err := r.h.Handle(context.Background(), scaleCommand(t, r.clock(), &three, false, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r.store.get(fleetName).Pin == nil {
		t.Fatal("pin not stored")
	}
	r.advance(11 * time.Minute)
	r.tick(t, "tick-late")
	if r.store.get(fleetName).Pin != nil {
		t.Error("pin outlived its --for")
	}
	// A pin that reaches the worker after its --for has run out would be logged as pinned and
	// never take effect: it is refused, saying so.
	late := scaleCommand(t, r.clock().Add(-6*time.Minute), &three, false, 5*time.Minute)
	if err := r.h.Handle(context.Background(), late); !messages.IsPermanent(err) || !strings.Contains(err.Error(), "already run out") {
		t.Errorf("pin past its --for: err %v, want a permanent refusal saying it has run out", err)
	}
	if r.store.get(fleetName).Pin != nil {
		t.Error("a pin past its --for was stored")
	}
}

// The record keeps what each decision applied, for publisher scale --wait: the desired capacity
// set or kept (a pin above the group's MaxSize applies the MaxSize) and the action, "held" while
// a cycle owns the capacity.
func TestRecordKeepsTheDecisionsDesiredAndAction(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{}, "i-1", "i-2")
	r.group.state.Max = 4
	r.scr.set("i-1", busy(0, 2))
	r.scr.set("i-2", busy(1, 2))
	six := 6
	pin := scaleCommand(t, r.clock(), &six, false, 0)
	if err := r.h.Handle(context.Background(), pin); err != nil {
		t.Fatal(err)
	}
	rec := r.store.get(fleetName)
	if rec.LastMessageID != pin.ID || rec.LastDesired == nil || *rec.LastDesired != 4 || rec.LastAction != "scale_out" {
		t.Fatalf("after pinning 6 with MaxSize 4: message %q, desired %v, action %q; want %q, 4, scale_out",
			rec.LastMessageID, rec.LastDesired, rec.LastAction, pin.ID)
	}

	r.hold = &fakeHold{active: true}
	r.rebuild(t, fleet.Policy{})
	r.group.mu.Lock()
	r.group.state.Desired = 3 // the cycle surged
	r.group.mu.Unlock()
	r.advance(time.Minute)
	r.tick(t, "tick-held")
	rec = r.store.get(fleetName)
	if rec.LastDesired == nil || *rec.LastDesired != 3 || rec.LastAction != "held" {
		t.Fatalf("held tick: desired %v, action %q; want 3 (kept), held", rec.LastDesired, rec.LastAction)
	}
}

// An Auto Scaling call of the decision that fails is written in the record (publisher scale
// --wait says it rather than wait for a group that will not move), and the next decision's record
// starts clean.
func TestRecordKeepsTheFailedAutoScalingCalls(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{}, "i-1", "i-2")
	r.group.state.Max = 8
	r.scr.set("i-1", busy(0, 2))
	r.scr.set("i-2", busy(1, 2))
	r.group.setErr = errors.New("ValidationError: New SetDesiredCapacity value 6 is above max value 5")
	six := 6
	pin := scaleCommand(t, r.clock(), &six, false, 0)
	if err := r.h.Handle(context.Background(), pin); err != nil {
		t.Fatal(err)
	}
	rec := r.store.get(fleetName)
	if rec.LastMessageID != pin.ID || len(rec.LastApplyErrors) != 1 || !strings.Contains(rec.LastApplyErrors[0], "set_desired: ValidationError") {
		t.Fatalf("after a refused SetDesiredCapacity: message %q, apply errors %q", rec.LastMessageID, rec.LastApplyErrors)
	}
	r.group.mu.Lock()
	r.group.setErr = nil
	r.group.mu.Unlock()
	r.advance(time.Minute)
	r.tick(t, "tick-2")
	if rec := r.store.get(fleetName); len(rec.LastApplyErrors) != 0 {
		t.Errorf("the next decision's record keeps the earlier apply errors %q", rec.LastApplyErrors)
	}
}

// Cancelling launches the group has not made lowers the desired capacity without removing an
// instance: the decision's action (decisions_total, the log line) says scale_in, not steady.
func TestActionOfCancelledLaunchesIsScaleIn(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		d    scaling.Decision
		want string
	}{
		{scaling.Decision{Desired: 3}, "scale_in"},
		{scaling.Decision{Desired: 4, Remove: []string{"i-1"}}, "scale_in"},
		{scaling.Decision{Desired: 6}, "scale_out"},
		{scaling.Decision{Desired: 5}, "steady"},
	} {
		if got := actionOf(c.d, 5); got != c.want {
			t.Errorf("actionOf(desired %d, remove %v) from 5 = %s, want %s", c.d.Desired, c.d.Remove, got, c.want)
		}
	}
}

func TestHandleRoutesAndRejects(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{}, "i-1")
	r.scr.set("i-1", busy(0, 2))
	sched := func(arn string) *messages.Message {
		return &messages.Message{Kind: messages.KindScheduled, ID: "ev-" + arn,
			Payload: &messages.Scheduled{RuleARN: arn, RuleName: arn[strings.LastIndexByte(arn, '/')+1:]}}
	}
	if !r.h.Handles(sched(tickRule)) {
		t.Error("the fleet's tick rule is not handled")
	}
	if err := r.h.Handle(context.Background(), sched(tickRule)); err != nil {
		t.Errorf("tick by rule ARN: %v", err)
	}
	other := sched("arn:aws:events:eu-west-1:123456789012:rule/someone-else")
	if r.h.Handles(other) {
		t.Error("another rule's tick is claimed")
	}
	if err := r.h.Handle(context.Background(), other); !messages.IsPermanent(err) {
		t.Errorf("tick of an unknown rule: err %v, want permanent", err)
	}
	c := messages.NewCommand("nope", messages.CommandTick, r.clock())
	if err := r.h.Handle(context.Background(), &messages.Message{Kind: messages.KindCommand, Payload: &c}); !messages.IsPermanent(err) {
		t.Errorf("command for an unknown fleet: err %v, want permanent", err)
	}
	stale := scaleCommand(t, r.clock().Add(-time.Hour), new(int), false, 0)
	if err := r.h.Handle(context.Background(), stale); !messages.IsPermanent(err) {
		t.Errorf("hour-old scale command: err %v, want permanent", err)
	}
	both := scaleCommand(t, r.clock(), new(int), true, 0)
	if err := r.h.Handle(context.Background(), both); !messages.IsPermanent(err) {
		t.Errorf("scale with desired and resume: err %v, want permanent", err)
	}
	r.group.mu.Lock()
	r.group.describeErr = fmt.Errorf("describing: %w", ErrGroupNotFound)
	r.group.mu.Unlock()
	if err := r.h.Tick(context.Background(), fleetName, "t-gone"); !messages.IsPermanent(err) {
		t.Errorf("tick of a missing group: err %v, want permanent", err)
	}
	r.group.mu.Lock()
	r.group.describeErr = errors.New("throttled")
	r.group.mu.Unlock()
	if err := r.h.Tick(context.Background(), fleetName, "t-throttled"); err == nil || messages.IsPermanent(err) {
		t.Errorf("tick with a failing describe: err %v, want transient", err)
	}
}

func TestNewRefusesNilDepsAndBadConfig(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Fleets: []fleet.Settings{{Name: "a", MetricsURL: "http://{{.PrivateIP"}, {Name: "a", GroupName: "g", Policy: fleet.Policy{MinInstances: 3, MaxInstances: 2}}}},
		Deps{}, nil)
	if err == nil {
		t.Fatal("accepted nil deps")
	}
	for _, want := range []string{"nil Group", "nil Scraper", "nil MetricsSink", "nil StateStore", "nil prometheus", "nil logger", "duplicate name", "empty group", "max (2)", "metrics_url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// value reads one series from the registry as /metrics would serve it; labelValues match the
// series' label values in label-name order.
func value(t *testing.T, reg *prometheus.Registry, name string, labelValues ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetValue())
			}
			if !slices.Equal(got, labelValues) {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Errorf("no series %s%v on /metrics", name, labelValues)
	return -1
}

// A group someone switched off in Auto Scaling (MaxSize 0, so desired 0) is not launched into:
// before, the policy's floor of one instance asked for a SetDesiredCapacity that Auto Scaling
// refuses, every tick. Its idle instances are unprotected so the group can terminate them (each
// drained); busy ones stay protected.
func TestSwitchedOffGroupIsNotLaunchedInto(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{MinInstances: 2}, "i-idle", "i-busy")
	r.group.state.Desired, r.group.state.Max = 0, 0
	r.group.protected = map[string]bool{"i-idle": true}
	r.scr.set("i-idle", busy(0, 4))
	r.scr.set("i-busy", busy(2, 4))
	r.tick(t, "tick-1")
	desired, terminated, protected, calls := r.group.snapshot()
	if desired != 0 || len(terminated) != 0 || slices.Contains(calls, "set_desired") {
		t.Fatalf("desired %d, terminated %v, calls %v: want the group left at 0 by the worker", desired, terminated, calls)
	}
	if protected["i-idle"] || !protected["i-busy"] {
		t.Fatalf("protection %v: want the idle instance unprotected, the busy one protected", protected)
	}
	// Once its instances are gone, the empty group stays empty.
	r.group.state.Members = nil
	r.advance(time.Minute)
	r.tick(t, "tick-2")
	if desired, _, _, calls := r.group.snapshot(); desired != 0 || slices.Contains(calls, "set_desired") {
		t.Fatalf("empty switched-off group: desired %d, calls %v", desired, calls)
	}
	lines := r.logs.lines(t, "scale decision")
	if len(lines) != 2 {
		t.Fatalf("%d decision lines, want 2", len(lines))
	}
	for _, l := range lines {
		if !strings.Contains(fmt.Sprint(l["reason"]), "switched off: the group's MaxSize is 0") {
			t.Fatalf("reason %q: want it to say the group is switched off", l["reason"])
		}
	}
}

// Launches the group was asked for and has not made (no spot capacity, a quota) are cancelled
// before a running instance is removed: the desired capacity goes down to the members listed,
// and nothing is terminated.
func TestLaunchesNotMadeAreCancelledFirst(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{MinInstances: 2, ScaleInWindow: time.Minute, MinUptime: time.Nanosecond}, "i-1", "i-2")
	r.group.state.Desired = 3 // one launch the group never made
	r.scr.set("i-1", busy(0, 4))
	r.scr.set("i-2", busy(0, 4))
	r.tick(t, "tick-1")
	r.advance(2 * time.Minute)
	r.tick(t, "tick-2")
	desired, terminated, _, _ := r.group.snapshot()
	if desired != 2 || len(terminated) != 0 {
		t.Fatalf("desired %d, terminated %v; want the unmade launch cancelled (desired 2), nothing terminated", desired, terminated)
	}
}

// A runner whose metrics stop answering while the others answer is replaced once it has failed
// for the policy's replace_unknown_after: terminated through the group without lowering the
// desired capacity (the group launches another), and only once, however many ticks follow
// while its replacement boots.
func TestAnInstanceWhoseMetricsStopAnsweringIsReplaced(t *testing.T) {
	t.Parallel()
	r := newRig(t, fleet.Policy{ReplaceUnknownAfter: 10 * time.Minute}, "i-ok", "i-wedged")
	r.scr.set("i-ok", busy(1, 2)) // i-wedged is never scraped: unknown
	r.tick(t, "tick-1")
	r.advance(9 * time.Minute)
	r.tick(t, "tick-2")
	if _, terminated, _, _ := r.group.snapshot(); len(terminated) != 0 {
		t.Fatalf("replaced %v after 9 minutes unknown, want none before 10", terminated)
	}
	r.advance(2 * time.Minute)
	r.tick(t, "tick-3")
	r.advance(time.Minute)
	r.tick(t, "tick-4")
	desired, terminated, _, calls := r.group.snapshot()
	if !slices.Equal(terminated, []string{"i-wedged"}) || desired != 2 || strings.Count(strings.Join(calls, ","), "replace") != 1 {
		t.Errorf("terminated %v, desired %d, calls %v: want i-wedged replaced once, desired kept at 2", terminated, desired, calls)
	}
	said := false
	for _, l := range r.logs.lines(t, "scale decision") {
		said = said || strings.Contains(fmt.Sprint(l["reason"]), "replacing i-wedged: its runner's metrics have not answered for 11m0s")
	}
	if !said {
		t.Error("no decision says why i-wedged was replaced")
	}
}
