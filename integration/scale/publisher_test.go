package scale_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/router"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/gobuild"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/messages"
)

var (
	buildOnce sync.Once
	pubPath   string
	buildErr  error
)

// publisher is cmd/publisher, built once per test binary.
func publisher(t *testing.T) string {
	t.Helper()
	return gobuild.Once(t, "github.com/runnerfleet/runnerfleet/cmd/publisher")
}

// controlQueue makes a FIFO control queue whose commands are handed, until the test ends, to h
// wrapped in the worker's command checks (router.CommandSafety over the state table): the
// command ledger publisher --wait reads is the worker's own. It returns the queue's URL.
func (e *env) controlQueue(t *testing.T, known string, h router.HandlerFunc) string {
	t.Helper()
	ctx := context.Background()
	sqsc := awssqs.NewFromConfig(e.w.Emulator.AWSConfig(t))
	q, err := sqsc.CreateQueue(ctx, &awssqs.CreateQueueInput{
		QueueName:  aws.String(emulator.UniqueName(t, "runnerfleet-control") + ".fifo"),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNameFifoQueue): "true"},
	})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	url := aws.ToString(q.QueueUrl)
	safety, err := router.CommandSafety(router.SafetyConfig{KnownFleet: func(name string) bool { return name == known }, Ledger: e.table},
		slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h = safety(h)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := sqsc.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1, MaxNumberOfMessages: 10})
			if err != nil {
				continue
			}
			for _, m := range out.Messages {
				msg, err := messages.Parse([]byte(aws.ToString(m.Body)))
				if err != nil {
					t.Errorf("parsing a control message: %v", err)
				} else if err := h(ctx, msg); err != nil {
					t.Logf("handling %s: %v", msg.Kind, err)
				}
				_, _ = sqsc.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return url
}

// publisher scale --wait, end to end: a pin above the group's MaxSize is taken, the worker's
// decision applies the MaxSize, and --wait waits until the group's desired capacity is there,
// saying why it is not the pin (exit 0); tick --wait prints the next decision; a command the
// worker refuses (a fleet it does not manage) ends --wait at once with its reason (exit 1).
func TestPublisherScaleWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	name := emulator.UniqueName(t, "runnerfleet-pin")
	if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name + "-lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatal(err)
	}
	if _, err := e.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(name + "-lt"), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(1), MaxSize: aws.Int32(3), DesiredCapacity: aws.Int32(1),
		AvailabilityZones: []string{"us-east-1a"},
	}); err != nil {
		t.Fatal(err)
	}
	e.waitSim(t, "1 runner of "+name, func(st runnersim.State) bool { return len(live(st, name)) == 1 })
	f := fleet.Settings{Name: "pin", GroupName: name, MetricsURL: e.w.MetricsURLTemplate()}
	wk := e.worker(t, f)
	queue := e.controlQueue(t, "pin", wk.h.Handle)
	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	// The publisher knows a fleet "ghost" the worker does not manage: the worker refuses it.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("region: %s\nendpoint: %s\nloopback_only: true\nstate_table: %s\nqueues: {control: {name: %q}}\nfleets:\n  - {name: pin, group: %s}\n  - {name: ghost, group: ghost-asg}\n",
		emulator.Region, e.w.Emulator.Endpoint, e.table.Name(), queue, name)), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(publisher(t), append(args, "--config", cfg, "--follow-interval", "100ms", "--timeout", "2m")...)
		cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "RUNNERFLEET_CONFIG=", "RUNNERFLEET_CONFIG_PARAMETER=", "RUNNERFLEET_STATE_TABLE=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		t.Logf("publisher %s:\n%s", strings.Join(args, " "), out.String())
		if err != nil {
			return out.String(), cmd.ProcessState.ExitCode()
		}
		return out.String(), 0
	}

	out, code := run("scale", "--fleet", "pin", "--desired", "5", "--for", "1h", "--wait")
	if code != 0 {
		t.Fatalf("scale --wait: exit %d", code)
	}
	for _, want := range []string{
		"the worker took the command at ",
		"desired 3 (scale_out): pinned at 3: scale out 1 → 3",
		"the pin asks for 5; the worker applied 3: the group's MaxSize is 3",
		"done: the group's desired capacity is 3, as the worker applied",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scale --wait output lacks %q", want)
		}
	}
	if d := aws.ToInt32(e.describe(t, name).DesiredCapacity); d != 3 {
		t.Errorf("group desired %d, want 3 (the MaxSize)", d)
	}

	out, code = run("tick", "--fleet", "pin", "--wait")
	if code != 0 || !strings.Contains(out, "the worker took the command") || !strings.Contains(out, "pinned at 3") {
		t.Errorf("tick --wait: exit %d; want 0, the take and the pinned decision", code)
	}

	out, code = run("scale", "--fleet", "ghost", "--desired", "1", "--wait")
	if code != 1 || !strings.Contains(out, `is for unknown fleet "ghost"`) {
		t.Errorf("scale --wait of a fleet the worker does not manage: exit %d; want 1 with the worker's reason", code)
	}
}
