package runcmd_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/runnerfleet/runnerfleet/infra/aws/runcmd"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/world"
)

// The adapter against the local world: an instance the simulator runs is managed; a command's
// invocation is Pending while SSM does not know it yet, then succeeds with the document's output.
func TestRunnerAgainstTheEmulator(t *testing.T) {
	_, id, r := start(t)
	ctx := context.Background()
	if ok, err := r.Managed(ctx, id); err != nil || !ok {
		t.Fatalf("Managed(%s) = %v, %v; want true", id, ok, err)
	}
	if ok, err := r.Managed(ctx, "i-00000000000000000"); err != nil || ok {
		t.Fatalf("Managed(unknown) = %v, %v; want false", ok, err)
	}
	if ok, err := r.DocumentExists(ctx, "runnerfleet-status"); err != nil || !ok {
		t.Fatalf("DocumentExists(runnerfleet-status) = %v, %v; want true", ok, err)
	}
	if ok, err := r.DocumentExists(ctx, "runnerfleet-status-typo"); err != nil || ok {
		t.Fatalf("DocumentExists of a document that does not exist = %v, %v; want false, no error", ok, err)
	}
	cmd, err := r.Send(ctx, "runnerfleet-status", id)
	if err != nil {
		t.Fatal(err)
	}
	// Right after SendCommand the emulator, like AWS, answers InvocationDoesNotExist: Pending.
	if status, _, err := r.Status(ctx, cmd, id); err != nil || status != runcmd.Pending {
		t.Fatalf("Status right after Send = %q, %v; want Pending", status, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	status, out, err := r.Wait(wctx, cmd, id, 200*time.Millisecond)
	if err != nil || status != "Success" {
		t.Fatalf("Wait = %q, %v; want Success", status, err)
	}
	if out == "" {
		t.Error("the status document printed nothing")
	}
	// Find: the command just sent is found by its document and time (what settles a Send whose
	// answer was lost); a later time or another document finds nothing.
	if got, found, err := r.Find(ctx, "runnerfleet-status", id, time.Now().Add(-time.Minute)); err != nil || !found || got != cmd {
		t.Errorf("Find(status, a minute ago) = %q, %v, %v; want %s", got, found, err, cmd)
	}
	if got, found, err := r.Find(ctx, "runnerfleet-status", id, time.Now().Add(time.Minute)); err != nil || found {
		t.Errorf("Find(status, in a minute) = %q, %v, %v; want nothing", got, found, err)
	}
	if got, found, err := r.Find(ctx, "runnerfleet-unregister", id, time.Now().Add(-time.Minute)); err != nil || found {
		t.Errorf("Find(unregister) = %q, %v, %v; want nothing", got, found, err)
	}
	if _, err := r.Send(ctx, "runnerfleet-status", "i-00000000000000000"); err == nil {
		t.Error("Send to an instance SSM does not manage succeeded")
	}
	if _, err := runcmd.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

// SendCommand has no idempotency token. The SDK retries a throttled SendCommand (SSM sent
// nothing) but not one whose answer failed after SSM took it: a retry would send the document
// twice. The command whose answer was lost is then found by Find.
func TestSendRetriesOnlyRefusedCalls(t *testing.T) {
	w, id, r := start(t)
	ctx := context.Background()
	sent := func() map[string]bool {
		t.Helper()
		ids := map[string]bool{}
		for _, ev := range logged(t, w, "ssm.command", id) {
			ids[ev.String("command_id")] = true
		}
		return ids
	}

	// Throttled: refused before anything was sent. The SDK retries, and one command is sent.
	if err := w.Emulator.InjectFault(ctx, emulator.Fault{Action: "SendCommand", Status: 400, Code: "ThrottlingException", InstanceID: id}); err != nil {
		t.Fatal(err)
	}
	first, err := r.Send(ctx, "runnerfleet-status", id)
	if err != nil {
		t.Fatalf("Send after one throttle: %v; want the SDK's retry to succeed", err)
	}
	if got := sent(); len(got) != 1 || !got[first] {
		t.Fatalf("commands sent after a throttled Send = %v; want only %s", got, first)
	}

	// Served, then the answer failed: Send fails, and no second command is sent.
	before := time.Now()
	if err := w.Emulator.InjectFault(ctx, emulator.Fault{Action: "SendCommand", After: true, Status: 500, Code: "InternalServerError", InstanceID: id}); err != nil {
		t.Fatal(err)
	}
	if id, err := r.Send(ctx, "runnerfleet-status", id); err == nil {
		t.Fatalf("Send whose answer failed returned command %s; want the error", id)
	}
	got := sent()
	if len(got) != 2 {
		t.Fatalf("commands sent = %v; want 2: the first, and one for the Send whose answer was lost", got)
	}
	lost, found, err := r.Find(ctx, "runnerfleet-status", id, before.Add(-time.Second))
	if err != nil || !found || !got[lost] || lost == first {
		t.Errorf("Find after the lost answer = %q, %v, %v; want the second command of %v", lost, found, err, got)
	}

	if faults := len(logged(t, w, emulator.KindFaultInjected, id)); faults != 2 {
		t.Errorf("faults injected = %d; want 2 (both armed faults used)", faults)
	}
}

// start runs the local world with one instance and returns it with a Runner on the emulator.
func start(t *testing.T) (*world.World, string, *runcmd.Runner) {
	t.Helper()
	w := world.Start(t, world.Options{})
	cfg := w.Emulator.AWSConfig(t)
	id := launch(t, cfg, w)
	r, err := runcmd.New(ssm.NewFromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return w, id, r
}

// logged returns the emulator's log events of kind about instance.
func logged(t *testing.T, w *world.World, kind, instance string) []emulator.LogEvent {
	t.Helper()
	events, err := w.Emulator.Log(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []emulator.LogEvent
	for _, ev := range events {
		if ev.Kind == kind && ev.String("instance_id") == instance {
			out = append(out, ev)
		}
	}
	return out
}

// launch creates a one-instance group and returns the instance once the simulator runs it.
func launch(t *testing.T, cfg aws.Config, w *world.World) string {
	t.Helper()
	ctx := context.Background()
	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := ec2.NewFromConfig(cfg).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatal(err)
	}
	group := emulator.UniqueName(t, "runnerfleet-asg")
	asg := autoscaling.NewFromConfig(cfg)
	if _, err := asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group), MinSize: aws.Int32(0), MaxSize: aws.Int32(1), DesiredCapacity: aws.Int32(1),
		LaunchTemplate:    &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		AvailabilityZones: []string{"us-east-1a"},
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, in := range w.Sim.State().Instances {
			if in.Group == group {
				return in.InstanceID
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the simulator never ran the group's instance")
	return ""
}
