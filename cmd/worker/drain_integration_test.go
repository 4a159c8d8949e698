package main

// Integration test of issue 5 through the worker binary: the drain handler wired in cmd/worker,
// on the local world (AWS emulator + runner simulator), lifecycle events delivered by an
// EventBridge rule, follow-ups as delayed messages on the lifecycle queue.

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/integration/world"
)

// routeLifecycle makes an EventBridge rule that sends the fleet's terminate lifecycle actions to
// the lifecycle queue, as the worker stack's rule does.
func routeLifecycle(t *testing.T, e *emulator.Emulator, q *queues) {
	t.Helper()
	ctx := context.Background()
	eb := eventbridge.NewFromConfig(e.AWSConfig(t))
	name := emulator.UniqueName(t, "runnerfleet-lifecycle")
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name),
		EventPattern: aws.String(`{"source":["aws.autoscaling"],"detail-type":["EC2 Instance-terminate Lifecycle Action"]}`)}); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	queueName := q.lifecycle[strings.LastIndex(q.lifecycle, "/")+1:]
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), Targets: []ebtypes.Target{{
		Id: aws.String("lifecycle"), Arn: aws.String("arn:aws:sqs:" + emulator.Region + ":123456789012:" + queueName),
	}}}); err != nil {
		t.Fatalf("PutTargets: %v", err)
	}
}

// A busy instance terminated through its group, with a job longer than the hook's 5 s heartbeat
// timeout: the worker keeps it in Terminating:Wait (heartbeats) until the job ends, then
// unregisters and completes it; no job is killed (all from the emulator's log).
func TestDrainThroughTheWorker(t *testing.T) {
	t.Parallel()
	w := world.Start(t, world.Options{Sim: runnersim.Config{Concurrent: 2}})
	e := w.Emulator
	q := makeQueues(t, e)
	routeLifecycle(t, e, q)
	f := makeFleet(t, e, 1, 5)
	f.metricsURL = w.MetricsURLTemplate()
	f.extra = "    drain: {poll_interval: 1s}\n"
	wk := startWorker(t, writeConfig(t, e, q, f, "127.0.0.1:0", "10s"))
	ctx := context.Background()
	asg := autoscaling.NewFromConfig(e.AWSConfig(t))

	var id string
	wk.waitFor(t, "the instance registered with the simulator", func() bool {
		for _, in := range w.Sim.State().Instances {
			if in.Group == f.group {
				id = in.InstanceID
				return true
			}
		}
		return false
	})
	const jobLength = 12 * time.Second // > 2 × the hook's heartbeat timeout
	if _, err := w.Sim.AddJobs([]runnersim.Job{{ID: "long-job", DurationMS: jobLength.Milliseconds()}}); err != nil {
		t.Fatal(err)
	}
	wk.waitFor(t, "the job running", func() bool {
		st, _ := w.Sim.State().Instance(id)
		return len(st.Running) == 1
	})
	if _, err := asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup: %v", err)
	}
	wk.waitFor(t, "the drain finished", func() bool {
		return wk.metric(`runnerfleet_drain_finished_total{fleet="blue",outcome="completed"}`) == 1
	})
	wk.waitFor(t, "the instance gone from its group", func() bool {
		out, err := asg.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
		return err == nil && len(out.AutoScalingInstances) == 0
	})

	log, err := w.Log(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var waitSeq, endSeq, completeSeq, proceedSeq, heartbeats, killed, timeouts, stops, unregisters int
	var completes []string
	for _, ev := range log {
		if ev.String("instance_id") != id {
			continue
		}
		switch ev.Kind {
		case "instance.state":
			switch to := ev.String("to"); {
			case to == "Terminating:Wait" && waitSeq == 0:
				waitSeq = ev.Seq
			case strings.HasPrefix(to, "Terminating") && to != "Terminating:Wait" && proceedSeq == 0:
				proceedSeq = ev.Seq
			}
		case "job.end":
			endSeq = ev.Seq
		case emulator.KindJobKilled:
			// The simulator's own event, one per killed job.
			killed++
		case "hook.heartbeat":
			heartbeats++
		case "hook.timeout":
			timeouts++
		case "hook.complete":
			completes = append(completes, ev.String("result"))
			completeSeq = ev.Seq
		case "ssm.command":
			if ev.String("status") == "Success" || ev.String("status") == "InProgress" || ev.String("status") == "Pending" {
				switch {
				case strings.HasSuffix(ev.String("document"), "stop-intake"):
					stops++
				case strings.HasSuffix(ev.String("document"), "unregister"):
					unregisters++
				}
			}
		}
	}
	if killed != 0 || w.Sim.State().Totals.Killed != 0 {
		t.Errorf("%d jobs killed (log), %d (simulator): want 0", killed, w.Sim.State().Totals.Killed)
	}
	if waitSeq == 0 || endSeq == 0 || !(waitSeq < endSeq) {
		t.Fatalf("log seqs: Terminating:Wait %d, job end %d: want the instance waiting before its job ended", waitSeq, endSeq)
	}
	if proceedSeq != 0 && proceedSeq < endSeq {
		t.Errorf("the instance left Terminating:Wait (seq %d) before its job ended (seq %d)", proceedSeq, endSeq)
	}
	if len(completes) != 1 || completes[0] != "CONTINUE" || completeSeq < endSeq {
		t.Errorf("completions %v (seq %d, job end %d): want one CONTINUE after the job ended", completes, completeSeq, endSeq)
	}
	if timeouts != 0 {
		t.Errorf("the hook timed out %d times: heartbeats missed", timeouts)
	}
	if heartbeats < 2 {
		t.Errorf("%d heartbeats over a %s job with a 5 s hook: want at least 2", heartbeats, jobLength)
	}
	if stops < 1 || unregisters < 1 {
		t.Errorf("stop-intake commands logged %d, unregister %d: want both", stops, unregisters)
	}
	if st, ok := w.Sim.State().Instance(id); ok && !st.Unregistered {
		t.Error("the runner was not unregistered")
	}
}

// Start-up validation against DescribeLifecycleHooks: a heartbeat interval over a third of the
// group's terminate hook's heartbeat timeout, or a group without the hook, and the worker does not
// start, naming the problem.
func TestStartRefusesHeartbeatOverHookTimeout(t *testing.T) {
	t.Parallel()
	e := emulator.Start(t, emulator.Options{})
	q := makeQueues(t, e)
	f := makeFleet(t, e, 0, 6)
	f.extra = "    drain: {heartbeat_interval: 3s}\n"
	cmd := exec.Command(workerBin, "--config", writeConfig(t, e, q, f, "127.0.0.1:0", "10s"), "--listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the worker started with a heartbeat interval over a third of the hook's timeout:\n%s", out)
	}
	if !strings.Contains(string(out), "heartbeat_interval 3s exceeds a third of hook "+fleet.DefaultTerminateHook+"'s heartbeat timeout 6s") {
		t.Errorf("output does not name the problem:\n%s", out)
	}
}

// A fleet whose group does not exist (its stack not created yet, or deleted before the fleet left
// the config) does not stop the worker, for the other fleets' drains would stop with it: the
// worker starts, says so (runnerfleet_fleet_ready 0, an error in its log), dead-letters the
// fleet's commands with the reason, and serves the fleet once its group exists and passes the
// check. A drain document that does not exist, for a group that does, stops the start.
func TestStartWithoutAFleetsGroup(t *testing.T) {
	t.Parallel()
	e := emulator.Start(t, emulator.Options{})
	q := makeQueues(t, e)
	f := makeFleet(t, e, 0, 60)
	ghost := emulator.UniqueName(t, "runnerfleet-asg-ghost")
	f.extra = fmt.Sprintf("  - name: ghost\n    group: %s\n    tick_rule: ghost-tick\n    metrics_url: %q\n    policy: {min: 0, max: 1}\n", ghost, f.metricsURL)
	w := startWorker(t, writeConfig(t, e, q, f, "127.0.0.1:0", "10s"))
	if got := w.metric(`runnerfleet_fleet_ready{fleet="blue"}`); got != 1 {
		t.Errorf("blue ready = %v, want 1", got)
	}
	if got := w.metric(`runnerfleet_fleet_ready{fleet="ghost"}`); got != 0 || !strings.Contains(w.out.String(), "fleet's auto scaling group does not exist") {
		t.Fatalf("ghost ready = %v, want 0 and an error logged", got)
	}

	// The worker stack's alarm reads FleetNotReady, published on every sweep while it lasts.
	cw := cwmetrics.NewClient(e.AWSConfig(t)) // the protocol the emulator speaks
	w.waitFor(t, "FleetNotReady 1 for ghost in CloudWatch", func() bool {
		now := time.Now()
		out, err := cw.GetMetricStatistics(context.Background(), &cloudwatch.GetMetricStatisticsInput{
			Namespace: aws.String(cwmetrics.DefaultNamespace), MetricName: aws.String(cwmetrics.MetricFleetNotReady),
			Dimensions: []cwtypes.Dimension{{Name: aws.String(cwmetrics.DimensionFleet), Value: aws.String("ghost")}},
			StartTime:  aws.Time(now.Add(-5 * time.Minute)), EndTime: aws.Time(now.Add(time.Minute)),
			Period: aws.Int32(60), Statistics: []cwtypes.Statistic{cwtypes.StatisticMaximum},
		})
		return err == nil && len(out.Datapoints) > 0 && aws.ToFloat64(out.Datapoints[0].Maximum) == 1
	})

	// A command for it is refused with the reason, not retried for ever.
	body, _ := tickCommand(t, "ghost")
	q.send(t, q.control, body, "ghost")
	var dead []sqstypes.Message
	w.waitFor(t, "the ghost fleet's tick dead-lettered", func() bool {
		dead = append(dead, q.receive(t, q.controlDLQ, time.Second)...)
		return len(dead) > 0
	})
	if reason := aws.ToString(dead[0].MessageAttributes[sqs.MetaReason].StringValue); !strings.Contains(reason, "not found") {
		t.Errorf("the dead letter's reason %q does not say the group was not found", reason)
	}

	// The stack is created: the next sweeps (every second here) find the group and its hook.
	createGroup(t, e, ghost, 0, 60)
	w.waitFor(t, "the ghost fleet ready once its group exists", func() bool {
		return w.metric(`runnerfleet_fleet_ready{fleet="ghost"}`) == 1
	})

	// A document name that does not exist, for a group that does: the worker does not start.
	f.extra = "    documents: {stop_intake: blue-stop-intake}\n"
	cmd := exec.Command(workerBin, "--config", writeConfig(t, e, q, f, "127.0.0.1:0", "10s"), "--listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the worker started with a drain document that does not exist:\n%s", out)
	}
	if !strings.Contains(string(out), "documents.stop_intake: SSM document blue-stop-intake does not exist") {
		t.Errorf("output does not name the missing document:\n%s", out)
	}
}

// Another tool's terminate hook on the fleet's group (a log shipper's, "other-tool"): the worker
// drains and completes the fleet's own hook's action and leaves the other one alone — never
// heartbeated or completed; it ends by its own timeout, as it would with the tool absent — and
// acks its event (nothing dead-lettered), logging the hook. The start-up check names the other
// hook as left to its own tool.
func TestDrainLeavesAnotherToolsHookAlone(t *testing.T) {
	t.Parallel()
	w := world.Start(t, world.Options{Sim: runnersim.Config{Concurrent: 2}})
	e := w.Emulator
	q := makeQueues(t, e)
	routeLifecycle(t, e, q)
	f := makeFleet(t, e, 1, 5)
	f.metricsURL = w.MetricsURLTemplate()
	f.extra = "    drain: {poll_interval: 1s}\n"
	ctx := context.Background()
	asg := autoscaling.NewFromConfig(e.AWSConfig(t))
	const other = "other-tool"
	if _, err := asg.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String(f.group), LifecycleHookName: aws.String(other),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"),
		HeartbeatTimeout:    aws.Int32(4), DefaultResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatalf("PutLifecycleHook: %v", err)
	}
	wk := startWorker(t, writeConfig(t, e, q, f, "127.0.0.1:0", "10s"))
	if out := wk.out.String(); !strings.Contains(out, "left to their own tool") || !strings.Contains(out, `"other_hooks":["`+other+`"]`) {
		t.Errorf("the start-up check did not name the other terminate hook as left to its tool:\n%s", out)
	}

	var id string
	wk.waitFor(t, "the instance registered with the simulator", func() bool {
		for _, in := range w.Sim.State().Instances {
			if in.Group == f.group {
				id = in.InstanceID
				return true
			}
		}
		return false
	})
	if _, err := asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup: %v", err)
	}
	wk.waitFor(t, "the drain finished", func() bool {
		return wk.metric(`runnerfleet_drain_finished_total{fleet="blue",outcome="completed"}`) >= 1
	})
	wk.waitFor(t, "the instance gone from its group", func() bool {
		out, err := asg.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
		return err == nil && len(out.AutoScalingInstances) == 0
	})
	if got := wk.metric(`runnerfleet_drain_finished_total{fleet="blue",outcome="completed"}`); got != 1 {
		t.Errorf("%v drains completed; want 1, the fleet's hook's", got)
	}
	if out := wk.out.String(); !strings.Contains(out, `"hook":"`+other+`"`) || !strings.Contains(out, "left to its own tool") {
		t.Errorf("no log line naming the other hook's action as left to its own tool")
	}

	log, err := w.Log(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	completed := map[string][]string{} // hook → results of its completions
	var otherHeartbeats, otherTimeouts int
	for _, ev := range log {
		if ev.String("instance_id") != id {
			continue
		}
		switch ev.Kind {
		case "hook.complete":
			completed[ev.String("hook")] = append(completed[ev.String("hook")], ev.String("result"))
		case "hook.heartbeat":
			if ev.String("hook") == other {
				otherHeartbeats++
			}
		case "hook.timeout":
			if ev.String("hook") == other {
				otherTimeouts++
			}
		}
	}
	if len(completed[other]) != 0 || otherHeartbeats != 0 {
		t.Errorf("the other tool's hook: completed %v, %d heartbeats; want it left alone", completed[other], otherHeartbeats)
	}
	if otherTimeouts != 1 {
		t.Errorf("the other tool's hook timed out %d times; want its action ended by its own timeout", otherTimeouts)
	}
	if got := completed[fleet.DefaultTerminateHook]; len(got) != 1 || got[0] != "CONTINUE" {
		t.Errorf("the fleet's hook: completions %v; want one CONTINUE", got)
	}
	if dead := q.receive(t, q.lifecycleDLQ, 0); len(dead) != 0 {
		t.Errorf("%d lifecycle messages dead-lettered; want none (the other hook's event is acked)", len(dead))
	}
}
