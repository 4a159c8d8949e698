package interrupt_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// An instance terminated behind its drain's back (EC2 TerminateInstances while it waits in
// Terminating:Wait): the state change finishes the drain record as lost with the count of jobs
// that were running, the count the simulator killed.
func TestStateChangeFinishesADrainAsLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	// A minute's heartbeat timeout (a heartbeat every 20 s), as in production where the state
	// change arrives long before the drain's next heartbeat would find the action gone. (With a
	// heartbeat due at once the drain may see the action gone first and record "action-gone".)
	f := e.group(groupSpec{name: "lost", desired: 1, min: 0, max: 2, terminateHook: true, hookTimeout: 60})
	e.start([]fleet.Settings{f}, nil)
	id := e.inService(f.GroupName, 1)[0]
	e.jobs(2*time.Minute, 2)
	e.eventually("two jobs running", func() bool { return len(e.sim(id).Running) == 2 })
	ctx := context.Background()
	if _, err := e.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the drain watching two jobs", func() bool {
		for _, b := range e.unfinishedDrains() {
			if b["instance_id"] == id && b["phase"] == "watch" && b["jobs"] == 2.0 {
				return true
			}
		}
		return false
	})
	if _, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	e.eventually("the drain finished", func() bool {
		rec = e.drainOf(id)
		return rec != nil && rec["phase"] == "done"
	})
	k := killed(e.log(), id)
	if rec["outcome"] != "lost" || rec["jobs"] != float64(k) || k != 2 {
		t.Fatalf("drain record %v, killed %d: want outcome lost with the 2 killed jobs", rec, k)
	}
	if got := count(t, e.im.DrainsLost.WithLabelValues(f.Name)); got != 1 {
		t.Errorf("drains_lost_total = %v, want 1", got)
	}
}

func (e *env) unfinishedDrains() []map[string]any {
	bodies, err := e.table.Unfinished(context.Background(), "drain#")
	must(e.t, err)
	var out []map[string]any
	for _, b := range bodies {
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// drainOf finds the drain record of the instance (finished or not) through its token in the log.
func (e *env) drainOf(id string) map[string]any {
	for _, ev := range of(e.log(), "hook.start", id) {
		body, _, found, err := e.table.Load(context.Background(), "drain#"+ev.String("token"), "drain")
		if err != nil || !found {
			continue
		}
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			return m
		}
	}
	return nil
}
