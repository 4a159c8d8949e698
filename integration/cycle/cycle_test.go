package cycle_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/messages"
)

// longJob outlasts the hook's heartbeat timeout (10 s): only the drain's heartbeats keep an old
// instance until its job ends.
const longJob = 15 * time.Second

// A cycle of a 3-instance fleet, each running a job longer than the hook's heartbeat timeout,
// max-unavailable 1, surge 1: all three replaced by instances of the new launch template
// version, never fewer than 2 InService intake-open instances (from the transition log), 0 jobs
// killed.
func TestCycleReplacesAllWithoutKillingAJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, spec{instances: 3})
	old := e.ids()
	e.jobsOnEach(longJob)
	e.newVersion()
	since := len(e.log())
	e.startTicking()
	if err := e.command(messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the cycle ends", func() bool { return e.record().Status.Final() })
	rec := e.record()
	evs := e.log()
	for _, ev := range rec.Events {
		t.Logf("cycle: %s %s", ev.At.Format("15:04:05.000"), ev.Text)
	}
	if rec.Status != cycle.StatusSucceeded {
		dumpLog(t, evs)
		t.Fatalf("cycle %s: %s; events %v", rec.Status, rec.Reason, rec.Events)
	}
	members := e.members()
	for _, id := range old {
		if _, ok := members[id]; ok {
			t.Errorf("old instance %s still in the group", id)
		}
	}
	if len(members) != 3 {
		t.Errorf("group has %d members, want 3", len(members))
	}
	for id, m := range members {
		if m.LaunchTemplate == nil || aws.ToString(m.LaunchTemplate.Version) != "2" || string(m.LifecycleState) != "InService" {
			t.Errorf("member %s: %+v, want InService on version 2", id, m)
		}
	}
	if least, at := minServing(evs, e.group, since); least < 2 {
		dumpLog(t, evs)
		t.Errorf("only %d InService intake-open instances at %s; the floor is 2", least, at)
	}
	e.noneKilled()
	for _, in := range e.w.Sim.State().Instances {
		if slices.Contains(old, in.InstanceID) && in.Finished != 1 {
			t.Errorf("old instance %s finished %d jobs, want its 1", in.InstanceID, in.Finished)
		}
	}
	if rec.Progress.Replaced != 3 || rec.Progress.Total != 3 {
		t.Errorf("progress %+v", rec.Progress)
	}
}

// A replacement whose runner never answers: the cycle stops with the reason, no old instance is
// retired, and the fleet keeps serving.
func TestUnhealthyReplacementStopsTheCycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, spec{instances: 3, healthTimeout: 5 * time.Second})
	old := e.ids()
	e.newVersion()
	// Every new instance's metrics hang from its first moment: watch the simulator and fault each
	// new registration before the next tick can see it.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		faulted := map[string]bool{}
		for {
			for _, in := range e.simInstances() {
				if !slices.Contains(old, in.InstanceID) && !faulted[in.InstanceID] {
					faulted[in.InstanceID] = e.w.Sim.SetFault(in.InstanceID, "hang") == nil
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	e.startTicking()
	if err := e.command(messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the cycle ends", func() bool { return e.record().Status.Final() })
	rec := e.record()
	if rec.Status != cycle.StatusFailed || !strings.Contains(rec.Reason, "not healthy within 5s") {
		t.Fatalf("cycle %s: %q", rec.Status, rec.Reason)
	}
	if len(rec.Retired) != 0 {
		t.Fatalf("retired %v", rec.Retired)
	}
	// A few more ticks retire nothing; every old instance still serves.
	time.Sleep(2 * time.Second)
	members := e.members()
	for _, id := range old {
		if m, ok := members[id]; !ok || string(m.LifecycleState) != "InService" {
			t.Errorf("old instance %s no longer InService: %+v", id, m)
		}
	}
	for _, ev := range e.log() {
		if ev.Kind == "hook.start" && slices.Contains(old, ev.String("instance_id")) {
			t.Errorf("old instance %s was retired: %v", ev.String("instance_id"), ev.Fields)
		}
	}
}
