package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

type item struct {
	body     []byte
	version  int64
	finished bool
}

// fakes is a race-safe fake of every port.
type fakes struct {
	mu    sync.Mutex
	items map[string]item
	now   time.Time
	// health answers in order; the last one repeats. nil entry = no answer.
	health     []*[2]float64
	looks      int
	completes  []string // result per Complete while pending
	calls      int
	pending    bool
	failNext   bool
	loseAnswer bool // the next Complete takes effect but its answer is lost (an error)
	followUps  []messages.Envelope
	hookHB     time.Duration
	heartbeats int
	hbErr      error // what Heartbeat fails with
	delays     []time.Duration
	// jobs is what RunningJobs answers from a page that answered (jobsErr: it fails even so: a
	// page without the jobs series, or, as a *WorkerError, a throttled address lookup); jobLooks
	// counts its calls.
	jobs     int
	jobsErr  error
	jobLooks int
	// jobsErrs, when set, stands for jobsErr: the n-th count fails with its n-th entry, round
	// and round (nil: answered).
	jobsErrs []error
	// blind decides each look, in order, before health does: a non-nil entry is a look the worker
	// could not make (the look fails with it, a *WorkerError, and health is not consumed), a nil
	// one a look answered from health; past its end blindErr, when set, fails every look.
	// blindLooks counts the looks that failed so; RunningJobs fails alike after such a look (the
	// same address lookup).
	blind      []error
	blindErr   error
	blindLooks int
	blindLast  error
	// hbAt is when each heartbeat was recorded.
	hbAt []time.Time
}

func newFakes() *fakes {
	return &fakes{items: map[string]item{}, now: time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC), pending: true}
}

func (f *fakes) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakes) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fakes) Load(_ context.Context, pk, sk string) ([]byte, int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[pk+"|"+sk]
	return bytes.Clone(it.body), it.version, ok, nil
}

func (f *fakes) Save(_ context.Context, pk, sk string, body []byte, version int64, _, expires time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[pk+"|"+sk]
	if (version == 0 && ok) || (version > 0 && (!ok || it.version != version)) {
		return false, nil
	}
	f.items[pk+"|"+sk] = item{body: bytes.Clone(body), version: version + 1, finished: !expires.IsZero()}
	return true, nil
}

func (f *fakes) Unfinished(_ context.Context, prefix string) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]byte
	for k, it := range f.items {
		if strings.HasPrefix(k, prefix) && !it.finished {
			out = append(out, bytes.Clone(it.body))
		}
	}
	return out, nil
}

func (f *fakes) Heartbeat(context.Context, string, string, string, string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats++
	f.hbAt = append(f.hbAt, f.now)
	if f.hbErr != nil {
		return false, f.hbErr
	}
	return f.pending, nil
}

func (f *fakes) HookTimeouts(context.Context, string, string) (time.Duration, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hookHB, 100 * f.hookHB, nil
}

func (f *fakes) Complete(_ context.Context, _, _, _, _, result string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failNext {
		f.failNext = false
		return false, errors.New("throttled")
	}
	if !f.pending {
		return false, nil
	}
	f.pending = false
	f.completes = append(f.completes, result)
	if f.loseAnswer {
		f.loseAnswer = false
		return false, errors.New("connection reset")
	}
	return true, nil
}

func (f *fakes) RequestJobs(context.Context, string, string) (float64, float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blindLast = f.blindErr
	if n := f.blindLooks + f.looks; n < len(f.blind) {
		f.blindLast = f.blind[n]
	}
	if f.blindLast != nil {
		f.blindLooks++
		return 0, 0, f.blindLast
	}
	a := f.health[min(f.looks, len(f.health)-1)]
	f.looks++
	if a == nil {
		return 0, 0, errors.New("no answer")
	}
	return a[0], a[1], nil
}

// RunningJobs reads the page of the latest look: a step's two reads come a moment apart from
// the same runner, so a page that did not answer RequestJobs does not answer this either.
func (f *fakes) RunningJobs(context.Context, string, string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobLooks++
	if f.blindLast != nil {
		return 0, f.blindLast
	}
	if f.health[min(max(f.looks-1, 0), len(f.health)-1)] == nil {
		return 0, errors.New("no answer")
	}
	if len(f.jobsErrs) > 0 {
		return f.jobs, f.jobsErrs[(f.jobLooks-1)%len(f.jobsErrs)]
	}
	return f.jobs, f.jobsErr
}

func (f *fakes) Schedule(_ context.Context, env messages.Envelope, delay time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.followUps = append(f.followUps, env)
	f.delays = append(f.delays, delay)
	return nil
}

func (f *fakes) record(t *testing.T) record {
	t.Helper()
	body, _, found, _ := f.Load(context.Background(), keyPrefix+"tok", sortKey)
	if !found {
		t.Fatal("no gate record")
	}
	var r record
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func newHandler(t *testing.T, f *fakes, gates map[string]Gate) *Handler {
	t.Helper()
	return newLoggingHandler(t, f, gates, io.Discard)
}

// newLoggingHandler is newHandler writing its JSON log lines to w.
func newLoggingHandler(t *testing.T, f *fakes, gates map[string]Gate, w io.Writer) *Handler {
	t.Helper()
	h, err := New(Config{
		Fleets: []fleet.Settings{{Name: "blue", GroupName: "blue-asg"}, {Name: "green", GroupName: "green-asg"}},
		Gates:  gates,
	}, Deps{Store: f, Lifecycle: f, Health: f, FollowUps: f, Clock: f, Logger: slog.New(slog.NewJSONHandler(w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// decide hands the gate its event and then each follow-up when it is due, until the gate
// completes or steps run out; it returns the time of the decision's step.
func decide(t *testing.T, f *fakes, h *Handler, steps int) time.Time {
	t.Helper()
	for range steps {
		if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
			t.Fatal(err)
		}
		if len(f.completes) > 0 {
			return f.Now()
		}
		f.advance(f.delays[len(f.delays)-1])
	}
	t.Fatalf("no decision in %d steps: looks %d, delays %v, record %+v", steps, f.looks, f.delays, f.record(t))
	return time.Time{}
}

// finishedCount is runnerfleet_launch_finished_total for fleet blue, result and reason.
func finishedCount(h *Handler, result, reason string) float64 {
	var m dto.Metric
	_ = h.m.Finished.WithLabelValues("blue", result, reason).Write(&m)
	return m.GetCounter().GetValue()
}

func launchMsg(group string) *messages.Message {
	la := &messages.LifecycleAction{LifecycleActionToken: "tok", AutoScalingGroupName: group, LifecycleHookName: fleet.DefaultLaunchHook,
		EC2InstanceId: "i-1", LifecycleTransition: messages.TransitionLaunching}
	env := &messages.Envelope{ID: "ev-1", Source: "aws.autoscaling", DetailType: messages.DetailTypeLaunchAction,
		Time: time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC), Detail: json.RawMessage(`{}`)}
	return &messages.Message{Kind: messages.KindLaunchAction, ID: env.ID, Event: env, Payload: la}
}

var gate = map[string]Gate{"blue": {Timeout: time.Minute, Poll: 10 * time.Second}}

// An instance launching into the warm pool is stopped there, not put to work: its action is
// completed at once, and it is gated when it leaves the pool for the group.
func TestWarmPoolLaunchIsNotGated(t *testing.T) {
	f := newFakes()
	h := newHandler(t, f, gate)
	msg := launchMsg("blue-asg")
	msg.Payload.(*messages.LifecycleAction).Destination = "WarmPool"
	if err := h.Handle(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	if f.looks != 0 || len(f.followUps) != 0 || len(f.completes) != 1 || f.completes[0] != ResultContinue {
		t.Errorf("warm-pool launch: %d looks, %d follow-ups, completed %v; want CONTINUE at once, no look", f.looks, len(f.followUps), f.completes)
	}
}

func TestHealthyRunnerContinues(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {4, 0}}
	h := newHandler(t, f, gate)
	ctx := context.Background()
	if err := h.Handle(ctx, launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.followUps) != 1 || f.delays[0] != 10*time.Second || f.followUps[0].ID != "ev-1/gate-1" {
		t.Fatalf("follow-ups %v delays %v", f.followUps, f.delays)
	}
	// A duplicate of the event before the follow-up is due does nothing.
	if err := h.Handle(ctx, launchMsg("blue-asg")); err != nil || f.looks != 1 {
		t.Fatalf("early duplicate: %v, looks %d", err, f.looks)
	}
	f.advance(10 * time.Second)
	for range 2 { // the follow-up, then a duplicate of it
		if err := h.Handle(ctx, launchMsg("blue-asg")); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.completes) != 1 || f.completes[0] != ResultContinue {
		t.Fatalf("completes %v", f.completes)
	}
	if r := f.record(t); r.Phase != phaseDone || r.Reason != ReasonHealthy {
		t.Fatalf("record %+v", r)
	}
}

func TestBrokenRunnersAreAbandonedWithTheirReason(t *testing.T) {
	for name, tc := range map[string]struct {
		health []*[2]float64
		want   string
	}{
		"token rejected, after one success before the fault": {[]*[2]float64{{1, 2}, {1, 5}, {1, 9}, {1, 12}, {1, 20}, {1, 30}, {1, 40}}, ReasonTokenRejected},
		"no answer":                    {[]*[2]float64{nil}, ReasonNoAnswer},
		"answers, never asks for jobs": {[]*[2]float64{{0, 0}}, ReasonNoJobRequest},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = tc.health
			h := newHandler(t, f, gate)
			for range 8 {
				if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
					t.Fatal(err)
				}
				f.advance(10 * time.Second)
			}
			if len(f.completes) != 1 || f.completes[0] != ResultAbandon {
				t.Fatalf("completes %v", f.completes)
			}
			if r := f.record(t); r.Reason != tc.want || r.Phase != phaseDone {
				t.Fatalf("record %+v, want reason %s", r, tc.want)
			}
		})
	}
}

func TestDisabledGateContinuesAtOnce(t *testing.T) {
	f := newFakes()
	h := newHandler(t, f, map[string]Gate{"blue": gate["blue"], "green": {Disabled: true}})
	if err := h.Handle(context.Background(), launchMsg("green-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.completes) != 1 || f.completes[0] != ResultContinue || f.looks != 0 {
		t.Fatalf("completes %v looks %d", f.completes, f.looks)
	}
	if err := h.Handle(context.Background(), launchMsg("other-asg")); !messages.IsPermanent(err) {
		t.Fatalf("unmanaged group: %v", err)
	}
}

func TestFailedCompletionIsRetriedWithTheSameResult(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {2, 0}, {0, 9}}
	h := newHandler(t, f, gate)
	ctx := context.Background()
	_ = h.Handle(ctx, launchMsg("blue-asg"))
	f.advance(10 * time.Second)
	f.failNext = true
	if err := h.Handle(ctx, launchMsg("blue-asg")); err == nil {
		t.Fatal("a failed completion must be retried")
	}
	if err := h.Handle(ctx, launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.completes) != 1 || f.completes[0] != ResultContinue || f.looks != 2 {
		t.Fatalf("completes %v looks %d: the retry must not look again", f.completes, f.looks)
	}
}

func TestSweepRecoversALostFollowUp(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {2, 0}}
	h := newHandler(t, f, gate)
	_ = h.Handle(context.Background(), launchMsg("blue-asg"))
	f.advance(5 * time.Second)
	if n, _ := h.Sweep(context.Background()); n != 0 {
		t.Fatalf("swept %d gates not yet overdue", n)
	}
	f.advance(time.Minute) // the follow-up was lost
	if n, err := h.Sweep(context.Background()); n != 1 || err != nil {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if len(f.completes) != 1 || f.completes[0] != ResultContinue {
		t.Fatalf("completes %v", f.completes)
	}
}

// A gate record written by a newer worker (a rolling deploy) is neither stepped nor written by
// this one, by a follow-up or by Sweep: the follow-up is passed on for a newer replica.
func TestNewerSchemaIsLeftToANewerReplica(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {2, 0}}
	h := newHandler(t, f, gate)
	newer := fmt.Sprintf(`{"schema":%d,"token":"tok","fleet":"blue","group":"blue-asg","hook":"gate","instance_id":"i-1","phase":"wait","from_the_future":true}`, recordSchema+1)
	if ok, _ := f.Save(context.Background(), keyPrefix+"tok", sortKey, []byte(newer), 0, f.Now(), time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	f.advance(time.Minute)
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if n, err := h.Sweep(context.Background()); n != 0 || err != nil {
		t.Errorf("sweep advanced %d gates (%v), want 0", n, err)
	}
	body, version, _, _ := f.Load(context.Background(), keyPrefix+"tok", sortKey)
	if string(body) != newer || version != 1 {
		t.Errorf("record rewritten (version %d): %s", version, body)
	}
	if f.looks != 0 || f.calls != 0 {
		t.Errorf("%d health looks, %d completions: want none from this worker", f.looks, f.calls)
	}
	if len(f.followUps) != 1 || f.followUps[0].ID != "ev-1" || f.delays[0] <= 0 {
		t.Errorf("follow-ups %v after %v: want the event passed on once, later, for a newer replica", f.followUps, f.delays)
	}
}

// After a rollback no newer replica may take a newer gate's follow-up: once its deadline and any
// hook's timeout have passed (its action has ended), it is no longer passed on every 5 s for ever.
func TestNewerSchemaPastItsActionIsNoLongerPassedOn(t *testing.T) {
	f := newFakes()
	h := newHandler(t, f, gate)
	deadline := f.Now().Add(-3 * time.Hour).UTC().Format(time.RFC3339Nano)
	newer := fmt.Sprintf(`{"schema":%d,"token":"tok","fleet":"blue","group":"blue-asg","hook":"gate","instance_id":"i-1","phase":"wait","deadline":%q}`, recordSchema+1, deadline)
	if ok, _ := f.Save(context.Background(), keyPrefix+"tok", sortKey, []byte(newer), 0, f.Now(), time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.followUps) != 0 || f.looks != 0 || f.calls != 0 {
		t.Errorf("follow-ups %v, %d looks, %d completions: want nothing", f.followUps, f.looks, f.calls)
	}
}

// After a rollback no replica may be left to step a newer worker's gate: the one passing it on
// keeps its hook alive, or the hook's timeout would ABANDON the instance, healthy or running jobs.
// It heartbeats when one is due — by the record and by its own last heartbeat, since it never
// writes the record — warns once rather than at every pass-on, and stops once the action has ended.
func TestNewerSchemaGateIsHeartbeatedWhilePassedOn(t *testing.T) {
	f := newFakes()
	var logs bytes.Buffer
	h := newLoggingHandler(t, f, gate, &logs)
	newer := fmt.Sprintf(`{"schema":%d,"token":"tok","fleet":"blue","group":"blue-asg","hook":"gate","instance_id":"i-1","phase":"wait",`+
		`"deadline":%q,"heartbeat_every":%d,"last_heartbeat":%q}`, recordSchema+1,
		f.Now().Add(time.Hour).Format(time.RFC3339Nano), int64(10*time.Second), f.Now().Add(-15*time.Second).Format(time.RFC3339Nano))
	if ok, _ := f.Save(context.Background(), keyPrefix+"tok", sortKey, []byte(newer), 0, f.Now(), time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	for range 24 { // two minutes of pass-ons
		if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
			t.Fatal(err)
		}
		f.advance(passOnDelay)
	}
	if f.heartbeats != 12 {
		t.Errorf("%d heartbeats in two minutes of pass-ons, want 12 (one every 10 s)", f.heartbeats)
	}
	if body, version, _, _ := f.Load(context.Background(), keyPrefix+"tok", sortKey); string(body) != newer || version != 1 {
		t.Errorf("record rewritten (version %d): %s", version, body)
	}
	if n := strings.Count(logs.String(), "left to a newer replica"); n != 1 {
		t.Errorf("%d warnings in two minutes of pass-ons, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), `"tok"`) {
		t.Errorf("the lifecycle action token is in the log:\n%s", logs.String())
	}
	passedOn := len(f.followUps)
	f.pending = false // the action has ended: nothing left to keep alive or pass on
	f.advance(10 * time.Second)
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if passedOn != 24 || len(f.followUps) != passedOn {
		t.Errorf("follow-ups: %d while pending (want 24), %d after the action ended (want none)", passedOn, len(f.followUps)-passedOn)
	}
}

// A completion that finds the action already ended (the hook timed out and AWS applied its
// default result) must not report the gate's result as done: the record, the log line and
// finished_total say action-gone, and the note what the gate meant.
func TestCompletionAfterTheActionEndedIsActionGone(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {4, 0}}
	var logs bytes.Buffer
	h := newLoggingHandler(t, f, gate, &logs)
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	f.advance(10 * time.Second)
	f.pending = false // the hook's timeout ended the action meanwhile
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	r := f.record(t)
	if r.Phase != phaseDone || r.Result != "" || r.Reason != ReasonActionGone || !strings.Contains(r.Note, "CONTINUE (healthy) was not applied") {
		t.Fatalf("record %+v; want done, no result, reason %s, the intended CONTINUE in the note", r, ReasonActionGone)
	}
	if gone, healthy := finishedCount(h, "none", ReasonActionGone), finishedCount(h, ResultContinue, ReasonHealthy); gone != 1 || healthy != 0 {
		t.Errorf("finished_total: %v action-gone, %v CONTINUE/healthy; want 1 and 0", gone, healthy)
	}
	if !strings.Contains(logs.String(), `"result":"","reason":"action-gone"`) {
		t.Errorf("no action-gone decision in the log:\n%s", logs.String())
	}
}

// A retried completion that finds the action ended most likely finds its own earlier one, whose
// answer was lost: the result stands, noted.
func TestRetriedCompletionFindingItsOwnKeepsTheResult(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {4, 0}}
	h := newHandler(t, f, gate)
	_ = h.Handle(context.Background(), launchMsg("blue-asg"))
	f.advance(10 * time.Second)
	f.loseAnswer = true
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err == nil {
		t.Fatal("a completion whose answer was lost must be retried")
	}
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	r := f.record(t)
	if r.Result != ResultContinue || r.Reason != ReasonHealthy || !strings.Contains(r.Note, "by an earlier attempt") {
		t.Fatalf("record %+v; want CONTINUE (healthy), noted", r)
	}
	if n := finishedCount(h, ResultContinue, ReasonHealthy); n != 1 {
		t.Errorf("finished_total CONTINUE/healthy %v, want 1", n)
	}
}

func TestConfigRefusals(t *testing.T) {
	_, err := New(Config{Fleets: []fleet.Settings{{Name: "a", GroupName: "g"}},
		Gates: map[string]Gate{"a": {Poll: time.Hour}, "zz": {}}}, Deps{})
	for _, want := range []string{"poll 1h0m0s outside", "gate for unknown fleet \"zz\"", "nil Store", "nil Health", "nil Jobs"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v, want %q", err, want)
		}
	}
}

func TestGateDerivedFromTheHook(t *testing.T) {
	f := newFakes()
	f.hookHB = 100 * time.Second
	f.health = []*[2]float64{nil}
	h := newHandler(t, f, nil) // no setting at all: the hook decides
	if err := h.Handle(context.Background(), launchMsg("green-asg")); err != nil {
		t.Fatal(err)
	}
	r := f.record(t)
	// Heartbeats too: a decision the sweep recovers late must not lose the race with the hook.
	if got := r.Deadline.Sub(r.StartedAt); got != 90*time.Second || r.Poll != DefaultPoll || r.HeartbeatEvery != 100*time.Second/3 {
		t.Fatalf("derived gate: timeout %s poll %s heartbeat %s; want 90s, %s, %s", got, r.Poll, r.HeartbeatEvery, DefaultPoll, 100*time.Second/3)
	}
	// A gate that, with the looks it may add past its deadline, is no longer than a third of the
	// hook's timeout needs none; one that is longer does.
	for hook, want := range map[time.Duration]time.Duration{20 * time.Minute: 0, 10 * time.Minute: 10 * time.Minute / 3} {
		f1 := newFakes()
		f1.hookHB = hook
		f1.health = []*[2]float64{nil}
		if err := newHandler(t, f1, map[string]Gate{"green": {Timeout: 3 * time.Minute}}).Handle(context.Background(), launchMsg("green-asg")); err != nil {
			t.Fatal(err)
		}
		if r := f1.record(t); r.HeartbeatEvery != want {
			t.Fatalf("3m gate (%s added at most) on a %s hook: heartbeat every %s, want %s", addedWait(r.Poll), hook, r.HeartbeatEvery, want)
		}
	}

	// A timeout beyond the hook's heartbeat timeout keeps the action alive with heartbeats.
	f2 := newFakes()
	f2.hookHB = 30 * time.Second
	f2.health = []*[2]float64{nil}
	h2 := newHandler(t, f2, map[string]Gate{"blue": {Timeout: 5 * time.Minute, Poll: 15 * time.Second}})
	for range 3 {
		if err := h2.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
			t.Fatal(err)
		}
		f2.advance(15 * time.Second)
	}
	if r := f2.record(t); r.HeartbeatEvery != 10*time.Second || f2.heartbeats < 2 {
		t.Fatalf("heartbeat every %s, %d heartbeats; want every 10s, at least 2", r.HeartbeatEvery, f2.heartbeats)
	}

	// A configured interval the hook would time out between is held to a third of the hook's.
	f3 := newFakes()
	f3.hookHB = 30 * time.Second
	f3.health = []*[2]float64{nil}
	if err := newHandler(t, f3, map[string]Gate{"blue": {Timeout: 5 * time.Minute, HeartbeatEvery: time.Minute}}).Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if r := f3.record(t); r.HeartbeatEvery != 10*time.Second {
		t.Fatalf("a 1m heartbeat_interval on a 30s hook: heartbeat every %s, want 10s", r.HeartbeatEvery)
	}
}

// A configured timeout the hook's global timeout (100 × its heartbeat timeout) would cut short is
// held inside it, with the looks the gate may add past it: otherwise AWS's ABANDON would decide,
// running jobs or not.
func TestTimeoutIsHeldInsideTheHooksGlobalTimeout(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second // global: 50 minutes
	f.health = []*[2]float64{nil}
	if err := newHandler(t, f, map[string]Gate{"blue": {Timeout: time.Hour, Poll: 15 * time.Second}}).Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	r := f.record(t)
	if got, limit := r.Deadline.Sub(r.StartedAt), 50*time.Minute-addedWait(15*time.Second)-time.Minute; got != limit {
		t.Errorf("a 1h gate on a hook whose global timeout is 50m: deadline %s after the start, want %s", got, limit)
	}
}

// A heartbeat that fails is tried again a little later, not at once: a gate whose heartbeats
// keep failing (a missing permission, throttling) must not loop as fast as its follow-ups go.
func TestFailingHeartbeatIsRetriedAfterAPause(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second
	f.health = []*[2]float64{nil}
	h := newHandler(t, f, map[string]Gate{"blue": {Timeout: 5 * time.Minute, Poll: 15 * time.Second}})
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	f.advance(10 * time.Second) // a heartbeat is due
	f.mu.Lock()
	f.hbErr = errors.New("AccessDenied")
	f.mu.Unlock()
	for range 3 {
		if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		delay := f.delays[len(f.delays)-1]
		f.mu.Unlock()
		if delay != 2500*time.Millisecond {
			t.Fatalf("next look after a failed heartbeat in %s; want 2.5s (a quarter of the 10 s interval)", delay)
		}
		f.advance(delay)
	}
	if f.heartbeats != 3 {
		t.Errorf("%d heartbeats tried, want 3 (one per step)", f.heartbeats)
	}
	// The retries heartbeat without looking: the looks stay a poll apart (at 0 s and 15 s), or
	// a gate whose heartbeats are throttled would add a look (an EC2 call, a scrape) every 2.5 s.
	if f.looks != 2 {
		t.Errorf("%d looks in 15 s of failing heartbeats, want 2 (a poll apart; none for a heartbeat's retry)", f.looks)
	}
}

// An event handled after the gate's deadline (the worker was down, the queue backed up) gets a
// second look before any ABANDON: health is a change between two looks, so one look alone would
// abandon every instance launched during the outage, healthy or not. A runner that answers but
// never asks for jobs is looked at for MinObservation from its first answer.
func TestLateEventLooksTwiceBeforeDeciding(t *testing.T) {
	for name, tc := range map[string]struct {
		health      []*[2]float64
		result, why string
		looks       int
	}{
		"healthy runner continues": {[]*[2]float64{{1, 0}, {4, 0}}, ResultContinue, ReasonHealthy, 2},
		"silent runner abandoned":  {[]*[2]float64{{0, 0}}, ResultAbandon, ReasonNoJobRequest, 1 + int(MinObservation/(10*time.Second))},
		// The first look got no answer: the two answered looks it takes come after it.
		"no answer first, then healthy": {[]*[2]float64{nil, {1, 0}, {4, 0}}, ResultContinue, ReasonHealthy, 3},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = tc.health
			h := newHandler(t, f, gate)
			f.advance(5 * time.Minute) // the gate's timeout is a minute
			if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
				t.Fatal(err)
			}
			if len(f.completes) != 0 || len(f.delays) != 1 || f.delays[0] != 10*time.Second {
				t.Fatalf("after one look: completes %v, follow-up delays %v; want none, and one look a poll later", f.completes, f.delays)
			}
			f.advance(10 * time.Second)
			decide(t, f, h, 10)
			r := f.record(t)
			if len(f.completes) != 1 || f.completes[0] != tc.result || r.Reason != tc.why || f.looks != tc.looks {
				t.Fatalf("completes %v, reason %s, looks %d; want %s (%s) after %d looks", f.completes, r.Reason, f.looks, tc.result, tc.why, tc.looks)
			}
		})
	}
}

// GitLab.com holds each request_job open for up to 50 s when it has no job, so the success counter
// of an idle healthy runner may not move for most of a minute. The gate never abandons a runner for
// "no successful job request" on less than MinObservation between its first answer and the
// decision: not when its event is handled late (a worker outage), nor when it first answers just
// before the deadline.
func TestIdleRunnerIsObservedForAMinuteBeforeAbandon(t *testing.T) {
	longPoll := []*[2]float64{{5, 0}, {5, 0}, {5, 0}, {5, 0}, {6, 0}} // a request ends a minute after the first look
	for name, tc := range map[string]struct {
		handled     time.Duration // after the launch
		health      []*[2]float64
		result, why string
	}{
		"late event, idle healthy runner":          {5 * time.Minute, longPoll, ResultContinue, ReasonHealthy},
		"first answer just before the deadline":    {50 * time.Second, longPoll, ResultContinue, ReasonHealthy},
		"late event, runner that never asks a job": {5 * time.Minute, []*[2]float64{{5, 0}}, ResultAbandon, ReasonNoJobRequest},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = tc.health
			h := newHandler(t, f, map[string]Gate{"blue": {Timeout: time.Minute, Poll: DefaultPoll}})
			f.advance(tc.handled)
			first := f.Now()
			at := decide(t, f, h, 12)
			r := f.record(t)
			if len(f.completes) != 1 || f.completes[0] != tc.result || r.Reason != tc.why {
				t.Fatalf("completes %v, reason %s after %d looks, %s after the first; want %s (%s)", f.completes, r.Reason, f.looks, at.Sub(first), tc.result, tc.why)
			}
			if tc.result == ResultAbandon && at.Sub(first) < MinObservation {
				t.Errorf("abandoned %s after the first answer, want at least %s", at.Sub(first), MinObservation)
			}
		})
	}
}

// An event handled a moment before the deadline gets its second look at the deadline, a second
// after its first: too soon for the runner's counters to move. The ABANDON waits for a look a
// poll after the first.
func TestSecondLookAPollAfterTheFirst(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {1, 0}, {4, 0}}
	h := newHandler(t, f, gate)
	f.advance(59 * time.Second) // the gate's timeout is a minute
	for range 3 {
		if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
			t.Fatal(err)
		}
		if len(f.completes) > 0 {
			break
		}
		f.advance(f.delays[len(f.delays)-1])
	}
	if r := f.record(t); len(f.completes) != 1 || f.completes[0] != ResultContinue || r.Reason != ReasonHealthy || f.looks != 3 {
		t.Fatalf("completes %v, reason %s, looks %d, delays %v; want CONTINUE (healthy) on the third look", f.completes, r.Reason, f.looks, f.delays)
	}
}

// The looks added past the deadline keep the hook's heartbeats: the next follow-up comes for
// whichever is due first.
func TestLateLooksKeepHeartbeating(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second // a heartbeat every 10 s
	f.health = []*[2]float64{{1, 0}}
	h := newHandler(t, f, map[string]Gate{"blue": {Timeout: time.Minute, Poll: 20 * time.Second}})
	f.advance(5 * time.Minute)
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if r := f.record(t); r.LateLooks != 1 || len(f.delays) != 1 || f.delays[0] > 10*time.Second {
		t.Fatalf("late looks %d, follow-up delays %v; want one late look and the next step within the 10 s heartbeat", r.LateLooks, f.delays)
	}
}

// Heartbeats due more often than the poll wake the gate past its deadline without deciding, or
// looking: the added look still comes a poll after the one before it.
func TestHeartbeatsDoNotUseUpLateLooks(t *testing.T) {
	f := newFakes()
	f.hookHB = 300 * time.Second // a heartbeat every 100 s
	f.health = []*[2]float64{{1, 0}, {4, 0}}
	h := newHandler(t, f, map[string]Gate{"blue": {Timeout: time.Minute, Poll: 400 * time.Second, HeartbeatEvery: 100 * time.Second}})
	f.advance(5 * time.Minute) // the event comes past the gate's deadline
	first := f.Now()
	for range 8 {
		if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
			t.Fatal(err)
		}
		if len(f.completes) > 0 {
			break
		}
		f.advance(f.delays[len(f.delays)-1])
	}
	if r := f.record(t); len(f.completes) != 1 || f.completes[0] != ResultContinue || r.Reason != ReasonHealthy {
		t.Fatalf("completes %v, reason %s, looks %d, delays %v; want CONTINUE once the runner asks for jobs a poll later",
			f.completes, r.Reason, f.looks, f.delays)
	}
	if at := f.Now().Sub(first); f.looks != 2 || at != 400*time.Second || f.heartbeats < 3 {
		t.Errorf("%d looks, %d heartbeats, decided %s after the first look; want 2 looks a poll (400s) apart, heartbeats between them", f.looks, f.heartbeats, at)
	}
}
