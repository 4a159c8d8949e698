package interrupt_test

import (
	"context"
	"testing"
	"time"

	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
)

// A rebalance recommendation for a busy instance: marked (intake stopped), replaced at the next
// tick — a replacement launched, the group's desired capacity unchanged — and retired through
// its terminate hook's drain with no job killed.
func TestRebalanceMarksReplacesAndDrains(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	f := e.group(groupSpec{name: "rebal", desired: 2, min: 1, max: 4, terminateHook: true})
	f.Policy = fleet.Policy{MinUptime: time.Hour, ScaleInWindow: time.Hour}
	e.start([]fleet.Settings{f}, nil)
	before := e.inService(f.GroupName, 2)
	job := e.jobs(8*time.Second, 1)[0]
	var busy string
	e.eventually("the job running", func() bool {
		busy = e.w.Sim.State().Jobs[job].InstanceID
		return busy != ""
	})
	ctx := context.Background()
	if err := e.w.Emulator.Rebalance(ctx, busy); err != nil {
		t.Fatal(err)
	}
	e.eventually("the mark with intake stopped", func() bool {
		m, found, _ := e.marks.Get(ctx, busy)
		return found && m.RebalanceRecommended && m.IntakeStopped
	})

	e.tick(f.Name)
	if d := e.desired(f.GroupName); d != 2 {
		t.Errorf("desired %d after the replacement, want 2", d)
	}
	var m interrupt.Mark
	m, _, _ = e.marks.Get(ctx, busy)
	if !m.Replaced {
		t.Fatalf("mark %+v: not replaced by the tick", m)
	}
	e.eventually("the marked instance drained and terminated", func() bool {
		return killed(e.log(), busy) >= 0
	})
	evs := e.log()
	if k := killed(evs, busy); k != 0 {
		t.Errorf("%d jobs killed on the replaced instance, want 0", k)
	}
	completes := of(evs, "hook.complete", busy)
	if len(completes) != 1 || completes[0].String("result") != "CONTINUE" {
		t.Errorf("hook completions %v, want one CONTINUE by the drain", completes)
	}
	if st := e.w.Sim.State().Jobs[job]; st.State != "finished" {
		t.Errorf("the job ended %s, want finished", st.State)
	}
	// The group is back to two serving instances, one of them new.
	after := e.inService(f.GroupName, 2)
	fresh := 0
	for _, id := range after {
		if id != before[0] && id != before[1] {
			fresh++
		}
		if id == busy {
			t.Errorf("the replaced instance is still in service")
		}
	}
	if fresh != 1 {
		t.Errorf("in service %v (before %v): want exactly one replacement", after, before)
	}
	// A second tick does not replace anything more.
	e.tick(f.Name)
	for id, in := range e.members(f.GroupName) {
		if in.LifecycleState != astypes.LifecycleStateInService {
			t.Errorf("%s is %s after a second tick", id, in.LifecycleState)
		}
	}
}
