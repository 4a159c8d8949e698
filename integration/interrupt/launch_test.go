package interrupt_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/launch"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

// The launch gate: a runner that never answers and one whose token GitLab rejects are abandoned
// after the gate's timeout, each with its reason; a healthy runner is let in (CONTINUE).
func TestLaunchGate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	cases := []struct {
		name, fault, result, reason string
	}{
		{"healthy", runnersim.FaultNone, launch.ResultContinue, launch.ReasonHealthy},
		{"silent", runnersim.FaultHang, launch.ResultAbandon, launch.ReasonNoAnswer},
		{"revoked", runnersim.FaultRejectToken, launch.ResultAbandon, launch.ReasonTokenRejected},
	}
	var fleets []fleet.Settings
	gates := map[string]launch.Gate{}
	for _, c := range cases {
		f := e.group(groupSpec{name: c.name, desired: 0, min: 0, max: 2, gateHook: true})
		fleets = append(fleets, f)
		gates[f.Name] = launch.Gate{Timeout: 6 * time.Second, Poll: time.Second}
	}
	e.start(fleets, gates)
	ctx := context.Background()
	first := map[string]string{} // fleet → its first instance
	for i, c := range cases {
		g := fleets[i].GroupName
		if _, err := e.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(g), DesiredCapacity: aws.Int32(1)}); err != nil {
			t.Fatal(err)
		}
		e.eventually("the runner of "+g, func() bool {
			for _, in := range e.w.Sim.State().Instances {
				if in.Group == g {
					first[c.name] = in.InstanceID
					return true
				}
			}
			return false
		})
		if c.fault != runnersim.FaultNone {
			must(t, e.w.Sim.SetFault(first[c.name], c.fault))
		}
	}
	for _, c := range cases {
		id := first[c.name]
		var done []emulator.LogEvent
		e.eventually("the gate of "+c.name, func() bool {
			done = of(e.log(), "hook.complete", id)
			return len(done) > 0
		})
		if len(done) != 1 || done[0].String("result") != c.result {
			t.Errorf("%s (%s): completions %v, want one %s", c.name, id, done, c.result)
			continue
		}
		var rec struct {
			Result, Reason, Phase string
			Checks                int
		}
		// The gate writes its record done right after CompleteLifecycleAction answers.
		e.eventually("the gate record of "+c.name+" done", func() bool {
			body, _, found, err := e.table.Load(ctx, "launch#"+done[0].String("token"), "launch")
			return err == nil && found && json.Unmarshal(body, &rec) == nil && rec.Phase == "done"
		})
		if rec.Reason != c.reason || rec.Result != c.result || rec.Phase != "done" {
			t.Errorf("%s: gate record %+v, want %s/%s", c.name, rec, c.result, c.reason)
		}
		if c.result == launch.ResultAbandon && rec.Checks < 3 {
			t.Errorf("%s: abandoned after %d looks; the gate should have kept looking until its timeout", c.name, rec.Checks)
		}
		if n := len(of(e.log(), "hook.timeout", id)); n != 0 {
			t.Errorf("%s: the hook timed out instead of the gate deciding", c.name)
		}
	}
	if _, in := e.members(fleets[0].GroupName)[first["healthy"]]; !in {
		t.Errorf("the healthy instance is not in its group")
	}
	for _, c := range cases[1:] {
		if killed(e.log(), first[c.name]) < 0 {
			// ABANDON terminates the instance; wait for it.
			e.eventually("the abandoned "+c.name+" instance terminated", func() bool { return killed(e.log(), first[c.name]) >= 0 })
		}
	}
}
