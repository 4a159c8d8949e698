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
	w := world.Start(t, world.Options{})
	cfg := w.Emulator.AWSConfig(t)
	ctx := context.Background()
	id := launch(t, cfg, w)

	r, err := runcmd.New(ssm.NewFromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Managed(ctx, id); err != nil || !ok {
		t.Fatalf("Managed(%s) = %v, %v; want true", id, ok, err)
	}
	if ok, err := r.Managed(ctx, "i-00000000000000000"); err != nil || ok {
		t.Fatalf("Managed(unknown) = %v, %v; want false", ok, err)
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

// launch creates a one-instance group and returns the instance once the simulator runs it.
func launch(t *testing.T, cfg aws.Config, w *world.World) string {
	t.Helper()
	ctx := context.Background()
	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := ec2.NewFromConfig(cfg).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); err != nil {
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
