package interrupt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

// A spot warning for a busy instance: its intake stops at once (jobs queued afterwards all start
// elsewhere), the next tick replaces it through its group (no decrement: one launch, where a raise
// of the desired capacity would make two once the group replaces the reclaimed instance itself),
// its drain waits on its job, and when EC2 reclaims it the drain finishes as lost with the job it
// was still running — as many as the simulator killed.
func TestSpotWarningStopsIntakeReplacesAndReportsLostJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	// Five minutes' heartbeat timeout, as in production where the reclaim's state change comes
	// long before the drain's next heartbeat (a third of it) would find the action gone and
	// record "action-gone" instead (see lost_test.go); a loaded machine may delay the state
	// change by seconds.
	f := e.group(groupSpec{name: "spot", desired: 2, min: 1, max: 4, terminateHook: true, hookTimeout: 300})
	// Three idle slots wanted: two instances of two slots cover one running job; without one of
	// them they do not.
	f.Policy = fleet.Policy{IdleSlots: 3, MinUptime: time.Hour, ScaleInWindow: time.Hour}
	e.start([]fleet.Settings{f}, nil)
	ids := e.inService(f.GroupName, 2)
	long := e.jobs(2*time.Minute, 1)[0]
	var busy string
	e.eventually("the long job running", func() bool {
		busy = e.w.Sim.State().Jobs[long].InstanceID
		return busy != ""
	})
	if len(ids) != 2 {
		t.Fatalf("in service: %v", ids)
	}
	e.tick(f.Name)
	if d := e.desired(f.GroupName); d != 2 {
		t.Fatalf("before the warning the tick set desired %d, want 2 (steady)", d)
	}

	ctx := context.Background()
	if err := e.w.Emulator.SpotInterruption(ctx, busy, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var m interrupt.Mark
	e.eventually("the mark with intake stopped", func() bool {
		var found bool
		m, found, _ = e.marks.Get(ctx, busy)
		return found && m.IntakeStopped && !e.sim(busy).IntakeOpen
	})
	if !m.SpotInterrupted || m.Fleet != f.Name || m.JobsAtNotice != 1 {
		t.Fatalf("mark %+v", m)
	}

	// The next tick replaces it through its group: desired unchanged, the instance terminating
	// (its hook holds it for the drain), one replacement launched.
	e.tick(f.Name)
	if d := e.desired(f.GroupName); d != 2 {
		t.Fatalf("after the warning the tick set desired %d, want 2 (replaced, not scaled out)", d)
	}
	e.eventually("the interrupted instance terminating and one replacement", func() bool {
		ms := e.members(f.GroupName)
		return len(ms) == 3 && strings.HasPrefix(string(ms[busy].LifecycleState), "Terminating")
	})
	if m, _, _ = e.marks.Get(ctx, busy); !m.Replaced {
		t.Fatalf("mark %+v: want it replaced", m)
	}

	// Jobs queued now all start elsewhere.
	short := e.jobs(time.Second, 2)
	e.eventually("the new jobs done", func() bool {
		st := e.w.Sim.State()
		return st.Jobs[short[0]].State == runnersim.JobFinished && st.Jobs[short[1]].State == runnersim.JobFinished
	})
	st := e.w.Sim.State()
	for _, j := range short {
		if st.Jobs[j].InstanceID == busy {
			t.Errorf("job %s started on the interrupted instance", j)
		}
	}
	if n := e.sim(busy).Started; n != 1 {
		t.Errorf("the interrupted instance started %d jobs, want only the first", n)
	}

	// The reclaim kills the long job; its drain finishes as lost with it, counted once.
	e.eventually("the reclaim reported", func() bool {
		m, _, _ = e.marks.Get(ctx, busy)
		return m.Gone
	})
	evs := e.log()
	k := killed(evs, busy)
	rec := e.drainOf(busy)
	if k != 1 || rec == nil || rec["outcome"] != "lost" || rec["jobs"] != float64(k) {
		t.Fatalf("killed %d (emulator), drain %v; want the drain lost with the 1 killed job", k, rec)
	}
	if got := count(t, e.im.JobsLost.WithLabelValues(f.Name, "drain")); got != 1 {
		t.Errorf("jobs_lost_total{cause=drain} = %v, want 1", got)
	}
	if got := count(t, e.im.JobsLost.WithLabelValues(f.Name, "spot")); got != 0 {
		t.Errorf("jobs_lost_total{cause=spot} = %v, want 0: counted once, by the drain", got)
	}
	if m.Lost != -1 {
		t.Errorf("mark lost %d, want -1 (the drain's count stands)", m.Lost)
	}
	if len(e.decisions("interrupt decision", busy)) < 2 {
		t.Errorf("want decision records for the notice and the reclaim")
	}
}

// A spot warning for an instance SSM cannot reach (SendCommand refused with InvalidInstanceId:
// already shutting down, or its agent never registered) is recorded once and acked: a retry could
// not send the stop either, and before, the notice went round its queue's receives into the DLQ.
func TestSpotWarningForAnInstanceSSMCannotReachIsRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	f := e.group(groupSpec{name: "unreach", desired: 1, min: 1, max: 2, terminateHook: true})
	f.Policy = fleet.Policy{MinUptime: time.Hour, ScaleInWindow: time.Hour}
	e.start([]fleet.Settings{f}, nil)
	id := e.inService(f.GroupName, 1)[0]
	ctx := context.Background()
	if err := e.w.Emulator.InjectFault(ctx, emulator.Fault{Action: "SendCommand", Status: 400, Code: "InvalidInstanceId", InstanceID: id, Count: 10}); err != nil {
		t.Fatal(err)
	}
	if err := e.w.Emulator.SpotInterruption(ctx, id, time.Minute); err != nil {
		t.Fatal(err)
	}
	var m interrupt.Mark
	e.eventually("the notice recorded", func() bool {
		var found bool
		m, found, _ = e.marks.Get(ctx, id)
		return found && m.SpotInterrupted && len(e.decisions("interrupt decision", id)) > 0
	})
	if m.IntakeStopped || !e.sim(id).IntakeOpen {
		t.Fatalf("mark %+v, intake open %v: nothing could be sent", m, e.sim(id).IntakeOpen)
	}
	d := e.decisions("interrupt decision", id)
	if len(d) != 1 || d[0]["action"] != "unreachable" {
		t.Fatalf("decisions %v: want one, action unreachable", d)
	}
	if got := count(t, e.im.Notices.WithLabelValues(f.Name, "spot", "unreachable")); got != 1 {
		t.Errorf("notices_total{action=unreachable} = %v, want 1", got)
	}
	if n := len(of(e.log(), "fault.injected", id)); n != 1 {
		t.Errorf("SendCommand refused %d times, want once (not retried)", n)
	}
}
