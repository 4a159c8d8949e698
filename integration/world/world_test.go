package world_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/integration/world"
)

// waitLimit bounds how long a test waits for a state; the state is asserted, not the time.
const waitLimit = 60 * time.Second

// longJob must outlast the status, unregister and stop-intake commands sent while it runs (each
// takes about half a second to be delivered, as on AWS).
const longJob = 8 * time.Second

type clients struct {
	ec2 *ec2.Client
	asg *autoscaling.Client
	ssm *ssm.Client
}

func newClients(t testing.TB, w *world.World) clients {
	cfg := w.Emulator.AWSConfig(t)
	return clients{ec2: ec2.NewFromConfig(cfg), asg: autoscaling.NewFromConfig(cfg), ssm: ssm.NewFromConfig(cfg)}
}

// newGroup creates a launch template and a group of desired instances; returns the group name.
func newGroup(t testing.TB, c clients, desired int32) string {
	t.Helper()
	ctx := context.Background()
	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := c.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatalf("CreateLaunchTemplate: %v", err)
	}
	name := emulator.UniqueName(t, "runnerfleet-asg")
	if _, err := c.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0),
		MaxSize:              aws.Int32(5),
		DesiredCapacity:      aws.Int32(desired),
		AvailabilityZones:    []string{"us-east-1a"},
	}); err != nil {
		t.Fatalf("CreateAutoScalingGroup: %v", err)
	}
	return name
}

func waitSim(t testing.TB, w *world.World, what string, cond func(runnersim.State) bool) runnersim.State {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		st := w.Sim.State()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; last simulator state: %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupRunners returns the simulator's live instances of a group.
func groupRunners(st runnersim.State, group string) []runnersim.InstanceState {
	var out []runnersim.InstanceState
	for _, in := range st.Instances {
		if in.Group == group && in.Process != runnersim.ProcessTerminated {
			out = append(out, in)
		}
	}
	return out
}

// send sends a document to one instance and returns the command id.
func send(t *testing.T, c clients, doc, instance string) string {
	t.Helper()
	return sendWithTimeout(t, c, doc, instance, "60")
}

// sendWithTimeout sends a document with an executionTimeout (seconds).
func sendWithTimeout(t *testing.T, c clients, doc, instance, timeout string) string {
	t.Helper()
	out, err := c.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{
		DocumentName: aws.String(doc),
		InstanceIds:  []string{instance},
		Parameters:   map[string][]string{"executionTimeout": {timeout}},
	})
	if err != nil {
		t.Fatalf("SendCommand %s to %s: %v", doc, instance, err)
	}
	return aws.ToString(out.Command.CommandId)
}

// result waits until the invocation has a final status; it also reports whether the first
// GetCommandInvocation answered InvocationDoesNotExist.
func result(t *testing.T, c clients, commandID, instance string) (*ssm.GetCommandInvocationOutput, bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	first, sawMissing := true, false
	for {
		out, err := c.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{
			CommandId: aws.String(commandID), InstanceId: aws.String(instance),
		})
		var missing *ssmtypes.InvocationDoesNotExist
		switch {
		case errors.As(err, &missing):
			if first {
				sawMissing = true
			}
		case err != nil:
			t.Fatalf("GetCommandInvocation: %v", err)
		default:
			switch out.Status {
			case ssmtypes.CommandInvocationStatusSuccess, ssmtypes.CommandInvocationStatusFailed,
				ssmtypes.CommandInvocationStatusTimedOut, ssmtypes.CommandInvocationStatusCancelled:
				return out, sawMissing
			}
		}
		first = false
		if time.Now().After(deadline) {
			t.Fatalf("command %s on %s did not finish", commandID, instance)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDrainCommandsRunAgainstTheSimulator covers the checks through the Go SDK: a
// stop-intake command succeeds at once and the runner takes no new job while its running job
// finishes; a status command reports the running jobs; an unregister while the runner runs fails;
// terminating an instance mid-job counts one killed job; commands to unmanaged instances and
// other documents fail as AWS's do.
func TestDrainCommandsRunAgainstTheSimulator(t *testing.T) {
	w := world.Start(t, world.Options{Sim: runnersim.Config{Concurrent: 2, PollInterval: 20 * time.Millisecond}})
	c := newClients(t, w)
	ctx := context.Background()
	for _, u := range []string{w.Sim.URL(), w.Emulator.Endpoint} {
		if pu, err := url.Parse(u); err != nil || pu.Hostname() != "127.0.0.1" {
			t.Fatalf("%s is not on loopback", u)
		}
	}

	group := newGroup(t, c, 1)
	st := waitSim(t, w, "the group's instance registered", func(st runnersim.State) bool { return len(groupRunners(st, group)) == 1 })
	a := groupRunners(st, group)[0].InstanceID

	info, err := c.ssm.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{})
	if err != nil {
		t.Fatalf("DescribeInstanceInformation: %v", err)
	}
	if len(info.InstanceInformationList) != 1 || aws.ToString(info.InstanceInformationList[0].InstanceId) != a ||
		info.InstanceInformationList[0].PingStatus != ssmtypes.PingStatusOnline {
		t.Fatalf("DescribeInstanceInformation = %+v; want only %s, Online", info.InstanceInformationList, a)
	}

	if _, err := w.Sim.AddJobs([]runnersim.Job{{ID: "long", DurationMS: longJob.Milliseconds()}}); err != nil {
		t.Fatal(err)
	}
	waitSim(t, w, "job long running", func(st runnersim.State) bool { return st.Jobs["long"].State == runnersim.JobRunning })

	// status reports the running job; right after SendCommand the invocation does not exist yet.
	sent := time.Now()
	statusID := send(t, c, "runnerfleet-fleet1-status", a)
	promptly := time.Since(sent) < 300*time.Millisecond // else a loaded machine ate the window
	out, sawMissing := result(t, c, statusID, a)
	if !sawMissing && promptly {
		t.Error("GetCommandInvocation right after SendCommand found the invocation; AWS answers InvocationDoesNotExist for a moment")
	}
	var rep runnersim.StatusReport
	if out.Status != ssmtypes.CommandInvocationStatusSuccess || json.Unmarshal([]byte(aws.ToString(out.StandardOutputContent)), &rep) != nil ||
		rep.RunningJobs != 1 || rep.JobIDs[0] != "long" {
		t.Fatalf("status: %s %q; want Success reporting job long", out.Status, aws.ToString(out.StandardOutputContent))
	}
	list, err := c.ssm.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{CommandId: aws.String(statusID), Details: true})
	if err != nil {
		t.Fatalf("ListCommandInvocations: %v", err)
	}
	if len(list.CommandInvocations) != 1 || list.CommandInvocations[0].Status != ssmtypes.CommandInvocationStatusSuccess ||
		len(list.CommandInvocations[0].CommandPlugins) != 1 {
		t.Errorf("ListCommandInvocations = %+v; want one Success invocation with its plugin", list.CommandInvocations)
	}

	// unregister while the runner runs fails.
	out, _ = result(t, c, send(t, c, "runnerfleet-fleet1-unregister", a), a)
	if out.Status != ssmtypes.CommandInvocationStatusFailed || out.ResponseCode == 0 {
		t.Errorf("unregister while running: %s (code %d); want Failed", out.Status, out.ResponseCode)
	}

	// stop-intake succeeds while the job still runs; no new job starts; the runner exits after it.
	stopID := send(t, c, "runnerfleet-fleet1-stop-intake", a)
	out, _ = result(t, c, stopID, a)
	if st := w.Sim.State(); st.Jobs["long"].State != runnersim.JobRunning {
		t.Fatalf("job long is %s when stop-intake completed; it must outlast the commands (raise longJob)", st.Jobs["long"].State)
	}
	if out.Status != ssmtypes.CommandInvocationStatusSuccess {
		t.Fatalf("stop-intake: %s %q", out.Status, aws.ToString(out.StandardErrorContent))
	}
	if _, err := w.Sim.AddJobs([]runnersim.Job{{ID: "next", DurationMS: 60_000}}); err != nil {
		t.Fatal(err)
	}
	st = waitSim(t, w, "job long finished", func(st runnersim.State) bool { return st.Jobs["long"].State == runnersim.JobFinished })
	in, _ := st.Instance(a)
	if in.Process != runnersim.ProcessExited || in.IntakeOpen || st.Jobs["next"].State != runnersim.JobQueued || in.Killed != 0 {
		t.Fatalf("after stop-intake: instance %+v, next %+v; want exited, intake closed, next queued, 0 killed", in, st.Jobs["next"])
	}
	out, _ = result(t, c, send(t, c, "runnerfleet-fleet1-unregister", a), a)
	if out.Status != ssmtypes.CommandInvocationStatusSuccess {
		t.Errorf("unregister after exit: %s %q; want Success", out.Status, aws.ToString(out.StandardErrorContent))
	}

	// Any other document fails: a missing one at SendCommand, an existing one as a Failed invocation.
	if _, err := c.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("no-such-document"), InstanceIds: []string{a}}); err == nil {
		t.Error("SendCommand of a missing document succeeded")
	}
	out, _ = result(t, c, send(t, c, "AWS-RunShellScript", a), a)
	if out.Status != ssmtypes.CommandInvocationStatusFailed {
		t.Errorf("AWS-RunShellScript: %s; want Failed (the local world runs only the drain documents)", out.Status)
	}

	// executionTimeout is honoured: an action that never answers times the command out.
	if err := w.Sim.SetFault(a, runnersim.FaultHangActions); err != nil {
		t.Fatal(err)
	}
	hungID := sendWithTimeout(t, c, "runnerfleet-fleet1-status", a, "2")
	if out, _ = result(t, c, hungID, a); out.Status != ssmtypes.CommandInvocationStatusTimedOut {
		t.Errorf("hung status command: %s; want TimedOut after executionTimeout 2", out.Status)
	}
	cmds, err := c.ssm.ListCommands(ctx, &ssm.ListCommandsInput{CommandId: aws.String(hungID)})
	if err != nil || len(cmds.Commands) != 1 || cmds.Commands[0].Status != ssmtypes.CommandStatusTimedOut {
		t.Errorf("ListCommands(%s) = %+v, %v; want one TimedOut command", hungID, cmds, err)
	}

	// A second instance takes job next; terminating it mid-job kills and counts it.
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(2)}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	st = waitSim(t, w, "job next running", func(st runnersim.State) bool { return st.Jobs["next"].State == runnersim.JobRunning })
	b := st.Jobs["next"].InstanceID

	// A command names its instance only (moto would run it on every instance).
	onB := send(t, c, "runnerfleet-fleet1-status", b)
	if out, _ = result(t, c, onB, b); out.Status != ssmtypes.CommandInvocationStatusSuccess {
		t.Errorf("status on %s: %s", b, out.Status)
	}
	list, err = c.ssm.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{CommandId: aws.String(onB)})
	if err != nil || len(list.CommandInvocations) != 1 || aws.ToString(list.CommandInvocations[0].InstanceId) != b {
		t.Errorf("ListCommandInvocations(%s) = %+v, %v; want one invocation, on %s", onB, list, err, b)
	}
	if _, err := c.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(b), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup: %v", err)
	}
	st = waitSim(t, w, "instance b terminated", func(st runnersim.State) bool {
		in, _ := st.Instance(b)
		return in.Process == runnersim.ProcessTerminated
	})
	if in, _ := st.Instance(b); in.Killed != 1 || st.Jobs["next"].State != runnersim.JobKilled || st.Totals.Killed != 1 {
		t.Errorf("after terminating %s mid-job: instance %+v, totals %+v; want 1 killed", b, in, st.Totals)
	}

	// A command to an instance that is not managed fails as AWS's does.
	_, err = c.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("runnerfleet-fleet1-status"), InstanceIds: []string{b}})
	var invalid *ssmtypes.InvalidInstanceId
	if !errors.As(err, &invalid) {
		t.Errorf("SendCommand to terminated %s: %v; want InvalidInstanceId", b, err)
	}

	// The emulator's log holds the simulator's transitions and the commands, in order.
	checkLog(t, w, a, b, stopID)
}

func checkLog(t *testing.T, w *world.World, a, b, stopID string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		events, err := w.Log(context.Background(), 0)
		if err != nil {
			t.Fatalf("reading the log: %v", err)
		}
		var seq []string
		killed := 0
		for _, ev := range events {
			switch {
			case ev.Kind == "runner.intake" && ev.String("instance_id") == a:
				seq = append(seq, "intake:"+strings.ToLower(strings.TrimSpace(jsonText(ev.Fields["open"]))))
			case ev.Kind == "job.start" && ev.String("job_id") == "long":
				seq = append(seq, "start:long")
			case ev.Kind == "job.end" && ev.String("job_id") == "long":
				seq = append(seq, "end:long")
			case ev.Kind == "ssm.command" && ev.String("command_id") == stopID:
				seq = append(seq, "stop:"+ev.String("status"))
			case ev.Kind == "job.killed" && ev.String("job_id") == "next" && ev.String("instance_id") == b:
				killed++
			}
		}
		want := "intake:true,start:long,stop:Pending,stop:InProgress,intake:false,stop:Success,end:long"
		got := strings.Join(seq, ",")
		if got == want && killed == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log order:\n got %s (killed events for next: %d)\nwant %s (1)", got, killed, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
