package interrupt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

func spotMsg(id string) *messages.Message {
	return &messages.Message{Kind: messages.KindSpotInterruption, Time: t0, Payload: &messages.SpotInterruption{InstanceID: id, InstanceAction: "terminate"}}
}

func rebalanceMsg(id string) *messages.Message {
	return &messages.Message{Kind: messages.KindRebalance, Time: t0, Payload: &messages.Rebalance{InstanceID: id}}
}

func stateMsg(id, state string) *messages.Message {
	return &messages.Message{Kind: messages.KindStateChange, Payload: &messages.StateChange{InstanceID: id, State: state}}
}

func TestSpotStopsIntakeOnceAndMarks(t *testing.T) {
	w := newFakeWorld()
	w.members["i-1"] = member{"blue-asg", "InService"}
	w.jobs["i-1"] = 2
	h := newTestHandler(t, w, nil)
	for range 2 { // the same notice twice
		if err := h.Handle(context.Background(), spotMsg("i-1")); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.sent) != 1 || w.sent[0] != "runnerfleet-stop-intake i-1" {
		t.Fatalf("sent = %v, want one stop-intake", w.sent)
	}
	m := w.marks["i-1"]
	if !m.SpotInterrupted || !m.IntakeStopped || m.JobsAtNotice != 2 || m.Fleet != "blue" || m.StopCommandID != "cmd-1" {
		t.Fatalf("mark = %+v", m)
	}
}

func TestNoticeForUnmanagedInstanceDoesNothing(t *testing.T) {
	w := newFakeWorld()
	w.members["i-2"] = member{"other-asg", "InService"}
	h := newTestHandler(t, w, nil)
	for _, id := range []string{"i-2", "i-unknown"} {
		if err := h.Handle(context.Background(), spotMsg(id)); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.sent) != 0 || len(w.marks) != 0 {
		t.Fatalf("sent %v, marks %v for unmanaged instances", w.sent, w.marks)
	}
	if got := count(h.m.Notices.WithLabelValues("", "spot", "unmanaged")); got != 2 {
		t.Fatalf("unmanaged notices = %v", got)
	}
}

func TestStopIntakeFailureIsRetried(t *testing.T) {
	w := newFakeWorld()
	w.members["i-1"] = member{"green-asg", "InService"}
	w.sendErr = errors.New("throttled")
	h := newTestHandler(t, w, nil)
	err := h.Handle(context.Background(), spotMsg("i-1"))
	if err == nil || messages.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	w.sendErr = nil
	if err := h.Handle(context.Background(), spotMsg("i-1")); err != nil {
		t.Fatal(err)
	}
	if len(w.sent) != 1 || w.sent[0] != "green-stop i-1" || !w.marks["i-1"].IntakeStopped {
		t.Fatalf("sent %v mark %+v", w.sent, w.marks["i-1"])
	}
}

// An instance SSM cannot reach (ErrUnreachable) is recorded and acked: a retry could not send the
// stop either.
func TestUnreachableInstanceIsRecordedNotRetried(t *testing.T) {
	w := newFakeWorld()
	w.members["i-1"] = member{"green-asg", "InService"}
	w.sendErr = fmt.Errorf("%w: InvalidInstanceId", ErrUnreachable)
	h := newTestHandler(t, w, nil)
	if err := h.Handle(context.Background(), spotMsg("i-1")); err != nil {
		t.Fatalf("err = %v, want the notice acked", err)
	}
	if m := w.marks["i-1"]; !m.SpotInterrupted || m.IntakeStopped {
		t.Fatalf("mark %+v: want the notice recorded, intake not stopped", m)
	}
	if got := count(h.m.Notices.WithLabelValues("green", "spot", "unreachable")); got != 1 {
		t.Fatalf("unreachable notices = %v", got)
	}
}

func TestRebalanceModes(t *testing.T) {
	w := newFakeWorld()
	w.members["i-b"] = member{"blue-asg", "InService"}
	w.members["i-g"] = member{"green-asg", "InService"}
	h := newTestHandler(t, w, map[string]RebalanceMode{"green": RebalanceReport})
	for _, id := range []string{"i-b", "i-g"} {
		if err := h.Handle(context.Background(), rebalanceMsg(id)); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.sent) != 1 || w.sent[0] != "runnerfleet-stop-intake i-b" {
		t.Fatalf("sent = %v: only the acting fleet stops intake", w.sent)
	}
	if !w.marks["i-g"].RebalanceRecommended || w.marks["i-g"].IntakeStopped {
		t.Fatalf("report-only mark = %+v", w.marks["i-g"])
	}
	// The next ticks: blue replaces its instance (no decrement) once; green does nothing.
	for range 2 {
		if _, err := h.ReplaceMarked(context.Background(), "blue"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ReplaceMarked(context.Background(), "green"); err != nil {
			t.Fatal(err)
		}
	}
	dec, ok := w.terminated["i-b"]
	if !ok || dec || len(w.terminated) != 1 || !w.marks["i-b"].Replaced {
		t.Fatalf("terminated = %v, mark %+v", w.terminated, w.marks["i-b"])
	}
}

// A mark whose instance left its group and whose state change never came (dead-lettered, lost
// in an outage) is closed StaleMarkAge after a tick first found the instance gone, a spot
// mark with the jobs seen at its notice as lost; a mark of an instance still in its group stays
// however old; a closed mark is closed once; one group lookup per tick.
func TestStaleMarksAreClosed(t *testing.T) {
	w := newFakeWorld()
	for _, id := range []string{"i-gone", "i-kept", "i-spot"} {
		w.members[id] = member{"blue-asg", "InService"}
	}
	w.jobs["i-spot"] = 3
	h := newTestHandler(t, w, map[string]RebalanceMode{"blue": RebalanceReport})
	for _, msg := range []*messages.Message{rebalanceMsg("i-gone"), rebalanceMsg("i-kept"), spotMsg("i-spot")} {
		if err := h.Handle(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	closeAt := func(after time.Duration) int {
		t.Helper()
		h.d.Clock = fixedClock{t0.Add(after)}
		n, err := h.CloseStale(context.Background(), "blue")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Hours later the instances are still members: nothing closes, whatever the marks' age.
	if n := closeAt(5 * time.Hour); n != 0 {
		t.Fatalf("closed %d marks of members", n)
	}
	// A lookup that misses an instance for one tick does not start its hour: back in its group,
	// its LeftAt is cleared.
	delete(w.members, "i-gone")
	closeAt(5*time.Hour + time.Minute)
	w.members["i-gone"] = member{"blue-asg", "InService"}
	closeAt(5*time.Hour + 2*time.Minute)
	if m := w.marks["i-gone"]; !m.LeftAt.IsZero() {
		t.Fatalf("LeftAt %v kept for an instance back in its group", m.LeftAt)
	}
	delete(w.members, "i-gone") // both leave; their state changes are lost
	delete(w.members, "i-spot")
	left := 6 * time.Hour
	if n := closeAt(left); n != 0 || !w.marks["i-gone"].LeftAt.Equal(t0.Add(left)) {
		t.Fatalf("first tick out of the group: closed %d, mark %+v; want LeftAt recorded, nothing closed", n, w.marks["i-gone"])
	}
	if n := closeAt(left + StaleMarkAge - time.Minute); n != 0 {
		t.Fatalf("closed %d before StaleMarkAge had passed since the instance left", n)
	}
	if n := closeAt(left + StaleMarkAge); n != 2 {
		t.Fatalf("closed %d StaleMarkAge after the instances left, want 2", n)
	}
	if m := w.marks["i-gone"]; !m.Gone || m.State != StateLeftUnseen || m.Lost != -1 {
		t.Errorf("closed rebalance mark = %+v; want gone, left unseen, lost unknown", m)
	}
	if m := w.marks["i-spot"]; !m.Gone || m.Lost != 3 {
		t.Errorf("closed spot mark = %+v; want the 3 jobs seen at the notice lost", m)
	}
	if got := count(h.m.JobsLost.WithLabelValues("blue", "spot")); got != 3 {
		t.Errorf("jobs lost (spot) = %v, want 3", got)
	}
	if m := w.marks["i-kept"]; m.Gone || !m.LeftAt.IsZero() {
		t.Errorf("the mark of an instance still in its group changed: %+v", m)
	}
	if n := closeAt(3 * left); n != 0 {
		t.Errorf("closed %d on a later tick, want 0", n)
	}
	if w.groupsOf != 7 {
		t.Errorf("%d group lookups over 7 ticks, want one each", w.groupsOf)
	}
}

// A state change that arrives after a tick found the instance gone closes the mark as usual
// (with its own lost count), and CloseStale then leaves it alone.
func TestLateStateChangeWinsOverCloseStale(t *testing.T) {
	w := newFakeWorld()
	w.members["i-spot"] = member{"blue-asg", "InService"}
	w.jobs["i-spot"] = 2
	h := newTestHandler(t, w, nil)
	if err := h.Handle(context.Background(), spotMsg("i-spot")); err != nil {
		t.Fatal(err)
	}
	delete(w.members, "i-spot")
	if _, err := h.CloseStale(context.Background(), "blue"); err != nil {
		t.Fatal(err)
	}
	w.jobs["i-spot"] = 1
	if err := h.StateChange(context.Background(), &messages.StateChange{InstanceID: "i-spot", State: "terminated"}); err != nil {
		t.Fatal(err)
	}
	h.d.Clock = fixedClock{t0.Add(2 * StaleMarkAge)}
	if n, err := h.CloseStale(context.Background(), "blue"); err != nil || n != 0 {
		t.Fatalf("CloseStale after the state change = %d, %v; want nothing to close", n, err)
	}
	if m := w.marks["i-spot"]; !m.Gone || m.State != "terminated" || m.Lost != 1 {
		t.Errorf("mark = %+v; want closed by the state change with its own count", m)
	}
	if got := count(h.m.JobsLost.WithLabelValues("blue", "spot")); got != 1 {
		t.Errorf("jobs lost (spot) = %v, want 1, counted once", got)
	}
}

func TestBeforeTickReplacesThenTicks(t *testing.T) {
	w := newFakeWorld()
	w.members["i-b"] = member{"blue-asg", "InService"}
	h := newTestHandler(t, w, nil)
	if err := h.Handle(context.Background(), rebalanceMsg("i-b")); err != nil {
		t.Fatal(err)
	}
	var sawState string
	next := func(ctx context.Context, m *messages.Message) error {
		_, sawState, _, _ = w.GroupOf(ctx, "i-b")
		return nil
	}
	tick := &messages.Message{Kind: messages.KindScheduled, Payload: &messages.Scheduled{RuleARN: "arn:aws:events:us-east-1:1:rule/runnerfleet-blue-tick"}}
	if err := h.BeforeTick(next)(context.Background(), tick); err != nil {
		t.Fatal(err)
	}
	if sawState != "Terminating:Wait" {
		t.Fatalf("the tick saw the marked instance %q, want it already leaving", sawState)
	}
}

func TestReclaimReportsLostJobsOnce(t *testing.T) {
	w := newFakeWorld()
	w.members["i-1"] = member{"blue-asg", "InService"}
	w.jobs["i-1"] = 3
	h := newTestHandler(t, w, nil)
	if err := h.Handle(context.Background(), spotMsg("i-1")); err != nil {
		t.Fatal(err)
	}
	delete(w.jobs, "i-1") // reclaimed: metrics gone; the count at the notice stands
	for _, st := range []string{"running", "shutting-down", "terminated", "shutting-down"} {
		if err := h.Handle(context.Background(), stateMsg("i-1", st)); err != nil {
			t.Fatal(err)
		}
	}
	m := w.marks["i-1"]
	if !m.Gone || m.Lost != 3 || m.State != "shutting-down" {
		t.Fatalf("mark = %+v", m)
	}
	if got := count(h.m.JobsLost.WithLabelValues("blue", "spot")); got != 3 {
		t.Fatalf("jobs lost = %v, want 3 counted once", got)
	}
}

func TestStateChangeFinishesDrainAsLost(t *testing.T) {
	w := newFakeWorld()
	w.drains["i-1"] = 2
	h := newTestHandler(t, w, nil)
	w.busy = true
	if err := h.Handle(context.Background(), stateMsg("i-1", "stopping")); err == nil || messages.IsPermanent(err) {
		t.Fatalf("busy drain: err = %v, want transient", err)
	}
	w.busy = false
	for range 2 {
		if err := h.Handle(context.Background(), stateMsg("i-1", "stopping")); err != nil {
			t.Fatal(err)
		}
	}
	if w.lostDrains["i-1"] != 2 {
		t.Fatalf("lost drains = %v", w.lostDrains)
	}
	if got := count(h.m.DrainsLost.WithLabelValues("blue")); got != 1 {
		t.Fatalf("drains lost = %v, want 1", got)
	}
}

// owners answers GroupTag from a map; err fails every look.
type owners struct {
	groups map[string]string
	err    error
}

func (o owners) GroupTag(_ context.Context, id string) (string, bool, error) {
	g, ok := o.groups[id]
	return g, ok, o.err
}

// A state change of an instance outside every managed fleet stops at its group tag: nothing is
// looked up (in AWS, a scan of the state table). One of ours, or a failed look, is looked up.
func TestStateChangeOfAnotherGroupsInstanceIsNotLookedUp(t *testing.T) {
	w := newFakeWorld()
	w.drains["i-theirs"], w.drains["i-ours"], w.drains["i-unknown"] = 1, 1, 1
	h := newTestHandler(t, w, nil)
	h.d.Owners = owners{groups: map[string]string{"i-theirs": "someone-elses-asg", "i-ours": "blue-asg", "i-unknown": "blue-asg"}}
	for _, id := range []string{"i-theirs", "i-ours"} {
		if err := h.Handle(context.Background(), stateMsg(id, "terminated")); err != nil {
			t.Fatal(err)
		}
	}
	h.d.Owners = owners{err: errors.New("ec2 throttled")}
	if err := h.Handle(context.Background(), stateMsg("i-unknown", "terminated")); err != nil {
		t.Fatal(err)
	}
	if _, looked := w.lostDrains["i-theirs"]; looked || w.lostDrains["i-ours"] != 1 || w.lostDrains["i-unknown"] != 1 {
		t.Fatalf("lost drains %v: want i-ours and i-unknown (the look failed), not i-theirs", w.lostDrains)
	}
	if got := count(h.m.StateChanges.WithLabelValues("not_managed")); got != 1 {
		t.Fatalf("not_managed = %v, want 1", got)
	}
}

func drainCmd(fleetName, id string, replace bool) *messages.Message {
	c := messages.NewCommand(fleetName, messages.CommandDrain, t0)
	c.Drain.InstanceID, c.Drain.Replace = id, replace
	return &messages.Message{Kind: messages.KindCommand, ID: c.ID, Payload: &c}
}

func TestRetire(t *testing.T) {
	w := newFakeWorld()
	w.members["i-0000000000000000a"] = member{"blue-asg", "InService"}
	w.members["i-0000000000000000b"] = member{"blue-asg", "InService"}
	w.members["i-0000000000000000c"] = member{"other-asg", "InService"}
	h := newTestHandler(t, w, nil)
	ctx := context.Background()
	if err := h.Handle(ctx, drainCmd("blue", "i-0000000000000000a", false)); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(ctx, drainCmd("blue", "i-0000000000000000b", true)); err != nil {
		t.Fatal(err)
	}
	if dec := w.terminated["i-0000000000000000a"]; !dec {
		t.Error("drain without --replace must decrement")
	}
	if dec, ok := w.terminated["i-0000000000000000b"]; !ok || dec {
		t.Error("drain --replace must terminate without decrement")
	}
	// Again: already leaving, nothing more.
	delete(w.terminated, "i-0000000000000000a")
	if err := h.Handle(ctx, drainCmd("blue", "i-0000000000000000a", false)); err != nil || len(w.terminated) != 1 {
		t.Fatalf("second drain: %v, terminated %v", err, w.terminated)
	}
	// An instance in Standby or the warm pool is not leaving: refused with the reason, never
	// acked as done while nothing happens.
	w.members["i-0000000000000000f"] = member{"blue-asg", "Standby"}
	w.members["i-00000000000000010"] = member{"blue-asg", "Warmed:Running"}
	for id, want := range map[string]string{
		"i-0000000000000000c": "belongs to Auto Scaling group other-asg, not to fleet \"blue\"",
		"i-0000000000000000d": "is not in any Auto Scaling group",
		"i-0000000000000000f": "is Standby, set aside from the group's capacity",
		"i-00000000000000010": "is Warmed:Running, set aside",
	} {
		err := h.Handle(ctx, drainCmd("blue", id, false))
		if !messages.IsPermanent(err) || !strings.Contains(messages.Reason(err), want) {
			t.Errorf("%s: err %v, want refusal %q", id, err, want)
		}
	}
	w.termErr = fmt.Errorf("below min size: %w", ErrRefused)
	w.members["i-0000000000000000e"] = member{"blue-asg", "InService"}
	if err := h.Handle(ctx, drainCmd("blue", "i-0000000000000000e", false)); !messages.IsPermanent(err) {
		t.Errorf("refused terminate: err %v, want permanent", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	_, err := New(Config{Fleets: []fleet.Settings{{Name: "a"}}, Rebalance: map[string]RebalanceMode{"a": "maybe", "b": RebalanceAct}}, Deps{})
	for _, want := range []string{"no group", "rebalance mode \"maybe\"", "unknown fleet \"b\"", "nil Groups", "nil Marks"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v, want %q", err, want)
		}
	}
}

func count(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// A reclaimed spot instance whose drain was in progress is reported once, as a lost drain.
func TestReclaimDuringDrainCountsTheDrainOnly(t *testing.T) {
	w := newFakeWorld()
	w.members["i-1"] = member{"blue-asg", "Terminating:Wait"}
	w.jobs["i-1"] = 2
	h := newTestHandler(t, w, nil)
	if err := h.Handle(context.Background(), spotMsg("i-1")); err != nil {
		t.Fatal(err)
	}
	w.drains["i-1"] = 2
	delete(w.jobs, "i-1")
	if err := h.Handle(context.Background(), stateMsg("i-1", "terminated")); err != nil {
		t.Fatal(err)
	}
	if got := count(h.m.JobsLost.WithLabelValues("blue", "drain")); got != 2 {
		t.Errorf("jobs lost (drain) = %v, want 2", got)
	}
	if got := count(h.m.JobsLost.WithLabelValues("blue", "spot")); got != 0 {
		t.Errorf("jobs lost (spot) = %v, want 0: counted once, as the drain's", got)
	}
	if m := w.marks["i-1"]; !m.Gone || m.Lost != -1 {
		t.Errorf("mark %+v: gone, without a second lost count", m)
	}
}

// A spot-marked instance is replaced through its group (no decrement) by the next tick, once, in
// any rebalance mode: raising the desired capacity for it would make two launches once the group
// replaces the reclaimed instance itself. Its reclaim after its drain ended reports nothing
// lost: the drain saw its jobs end (or counted them).
func TestSpotIsReplacedThroughTheGroupOnce(t *testing.T) {
	w := newFakeWorld()
	w.members["i-g"] = member{"green-asg", "InService"}
	w.jobs["i-g"] = 2
	h := newTestHandler(t, w, map[string]RebalanceMode{"green": RebalanceReport})
	if err := h.Handle(context.Background(), spotMsg("i-g")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		h.PrepareTick(context.Background(), "green")
	}
	dec, ok := w.terminated["i-g"]
	if !ok || dec || len(w.terminated) != 1 || !w.marks["i-g"].Replaced {
		t.Fatalf("terminated = %v, mark %+v: want i-g replaced once, without decrement", w.terminated, w.marks["i-g"])
	}
	// The drain saw the jobs end and completed; then EC2 reclaims the instance.
	delete(w.jobs, "i-g")
	if err := h.Handle(context.Background(), stateMsg("i-g", "terminated")); err != nil {
		t.Fatal(err)
	}
	if got := count(h.m.JobsLost.WithLabelValues("green", "spot")); got != 0 {
		t.Errorf("jobs lost (spot) = %v, want 0: the replaced instance's drain accounted for them", got)
	}
	if m := w.marks["i-g"]; !m.Gone || m.Lost != -1 {
		t.Errorf("mark %+v: want gone, no lost count of its own", m)
	}
}

// A spot-marked instance already gone from its group when the tick reads its mark (reclaimed
// first) is not recorded as replaced: nothing of ours drained it, so its reclaim still reports
// the jobs seen at its notice as lost.
func TestSpotGoneBeforeTheTickStillReportsItsJobs(t *testing.T) {
	w := newFakeWorld()
	w.members["i-g"] = member{"green-asg", "InService"}
	w.jobs["i-g"] = 2
	h := newTestHandler(t, w, nil)
	if err := h.Handle(context.Background(), spotMsg("i-g")); err != nil {
		t.Fatal(err)
	}
	delete(w.members, "i-g") // reclaimed before the next tick
	delete(w.jobs, "i-g")
	h.PrepareTick(context.Background(), "green")
	if m := w.marks["i-g"]; m.Replaced || len(w.terminated) != 0 {
		t.Fatalf("mark %+v, terminated %v: want it left for its state change", m, w.terminated)
	}
	if err := h.Handle(context.Background(), stateMsg("i-g", "terminated")); err != nil {
		t.Fatal(err)
	}
	if got := count(h.m.JobsLost.WithLabelValues("green", "spot")); got != 2 {
		t.Errorf("jobs lost (spot) = %v, want the 2 seen at its notice", got)
	}
}
