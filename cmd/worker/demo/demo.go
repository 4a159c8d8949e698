package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/messages"
)

// The fixed ports of `make emulator` and configs/local.yaml.
const (
	awsPort    = 4566
	simPort    = 9252
	workerPort = 9090
)

// Bounds of the demo's waits: generous, since moto starts slowly on a busy 2-core machine.
const (
	readyTimeout  = 60 * time.Second
	eventsTimeout = 150 * time.Second
	// hookTimeout is the demo group's lifecycle hook timeout: no drain handler answers the hooks
	// yet, so they end at this timeout with CONTINUE (the emulator accepts less than AWS's 30 s).
	hookTimeout = 5
	// tickPeriod makes the fleet's rate(1 minute) tick rule fire this often.
	tickPeriod = 3 * time.Second
)

// Options tune Run.
type Options struct {
	// Bin holds the worker and publisher binaries.
	Bin string
	// Config is the worker config of the fixed-port world (configs/local.yaml).
	Config string
	// FreePorts runs on free loopback ports (the config's addresses are rewritten).
	FreePorts bool
}

// Summary is what the demo saw, from the worker's /metrics and the emulator's state.
type Summary struct {
	// Received, Acked, DeadLettered, Nacked count messages by kind (all queues).
	Received, Acked, DeadLettered, Nacked map[string]float64
	// Unknown counts messages acked as of a kind no handler takes yet.
	Unknown float64
	// Ticks counts ticks by source (schedule, command).
	Ticks map[string]float64
	// Emitted counts the EventBridge events the emulator emitted, by detail-type.
	Emitted map[string]int
	// HookTimeouts counts lifecycle hooks that ended at their timeout (no drain handler yet).
	HookTimeouts int
	// DeadLetterDepth is the number of messages in the two DLQs at the end.
	DeadLetterDepth int
	// Instances are the group's instances at the end (id: lifecycle state).
	Instances []string
	// CommandID is the id the publisher printed.
	CommandID string
}

// expectedKinds are the kinds the demo makes arrive; Run fails unless the worker received each.
var expectedKinds = []messages.Kind{
	messages.KindLaunchAction, messages.KindTerminateAction, messages.KindSpotInterruption,
	messages.KindRebalance, messages.KindStateChange, messages.KindScheduled,
	messages.KindParameterChange, messages.KindStackStatus, messages.KindCommand,
}

// Run runs the whole demo and prints its summary to out.
func Run(ctx context.Context, o Options, out io.Writer) (*Summary, error) {
	say := func(format string, args ...any) { fmt.Fprintf(out, "demo: "+format+"\n", args...) }
	aws_, sim_, wk := awsPort, simPort, workerPort
	if o.FreePorts {
		var err error
		if aws_, err = emulator.FreePort(); err == nil {
			if sim_, err = emulator.FreePort(); err == nil {
				wk, err = emulator.FreePort()
			}
		}
		if err != nil {
			return nil, err
		}
	} else if err := checkFree(aws_, sim_, wk); err != nil {
		return nil, err
	}
	for _, b := range []string{"worker", "publisher"} {
		if _, err := os.Stat(filepath.Join(o.Bin, b)); err != nil {
			return nil, fmt.Errorf("no %s binary in %s (make demo builds it): %w", b, o.Bin, err)
		}
	}
	raw, err := os.ReadFile(o.Config)
	if err != nil {
		return nil, fmt.Errorf("reading the demo config: %w", err)
	}
	text := strings.NewReplacer(
		fmt.Sprintf("127.0.0.1:%d", awsPort), fmt.Sprintf("127.0.0.1:%d", aws_),
		fmt.Sprintf("127.0.0.1:%d", simPort), fmt.Sprintf("127.0.0.1:%d", sim_),
		fmt.Sprintf("127.0.0.1:%d", workerPort), fmt.Sprintf("127.0.0.1:%d", wk),
	).Replace(string(raw))
	cfg, err := config.Parse([]byte(text), config.Source{Getenv: func(string) string { return "" }})
	if err != nil {
		return nil, fmt.Errorf("the demo config %s: %w", o.Config, err)
	}
	if len(cfg.Fleets) != 1 {
		return nil, fmt.Errorf("the demo config names %d fleets, want 1", len(cfg.Fleets))
	}
	fl := cfg.Fleets[0]
	tmp, err := os.MkdirTemp("", "runnerfleet-demo")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cfgPath := filepath.Join(tmp, "worker.yaml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return nil, err
	}

	// 1. The local world.
	emulator.SetTestEnv() // dummy credentials, no instance metadata; inherited by the binaries
	sim, err := runnersim.New(runnersim.Config{Addr: fmt.Sprintf("127.0.0.1:%d", sim_)})
	if err != nil {
		return nil, err
	}
	if err := sim.Start(); err != nil {
		return nil, fmt.Errorf("starting the runner simulator: %w", err)
	}
	defer sim.Close()
	say("starting the AWS emulator on 127.0.0.1:%d (runner simulator on %s)", aws_, sim.URL())
	emu, err := emulator.Launch(emulator.Options{Port: aws_, RunnerSim: sim.URL(), TickPeriod: tickPeriod})
	if err != nil {
		return nil, fmt.Errorf("starting the AWS emulator: %w", err)
	}
	defer emu.Stop()
	if err := sim.SetEmulatorURL(emu.Endpoint); err != nil {
		return nil, err
	}
	awsCfg, err := rfaws.LoadConfig(ctx, rfaws.ConfigOptions{Region: emulator.Region, BaseEndpoint: emu.Endpoint, LoopbackOnly: true})
	if err != nil {
		return nil, err
	}
	c := clients{
		sqs: awssqs.NewFromConfig(awsCfg), eb: eventbridge.NewFromConfig(awsCfg), asg: autoscaling.NewFromConfig(awsCfg),
		ec2: ec2.NewFromConfig(awsCfg), ssm: ssm.NewFromConfig(awsCfg), cfn: cloudformation.NewFromConfig(awsCfg),
	}

	// 2. Queues and rules.
	urls, err := c.createQueues(ctx, cfg.Queues)
	if err != nil {
		return nil, err
	}
	if err := c.createRules(ctx, cfg.Queues, fl.Name, fl.TickRule); err != nil {
		return nil, err
	}
	say("created queues %s, %s (+ DLQs) and rules for lifecycle, spot, state-change, parameter and stack events and the tick of fleet %s",
		cfg.Queues.Lifecycle.Name, cfg.Queues.Control.Name, fl.Name)

	// 3. The state table and the fleet's group (the worker checks its hooks at start-up).
	if err := state.CreateTable(ctx, dynamodb.NewFromConfig(awsCfg), cfg.StateTable); err != nil {
		return nil, fmt.Errorf("creating the state table: %w", err)
	}
	if err := c.createGroup(ctx, fl.GroupName); err != nil {
		return nil, err
	}
	var ids []string
	if err := waitFor(ctx, readyTimeout, func() bool {
		ids = c.inService(ctx, fl.GroupName)
		return len(ids) >= 2
	}); err != nil {
		return nil, fmt.Errorf("the group's instances did not come in service: %w", err)
	}
	say("state table %s; group %s: instances %s in service (their launch hooks timed out: no handler yet)", cfg.StateTable, fl.GroupName, strings.Join(ids, ", "))

	// 4. The worker.
	w, err := startWorker(ctx, filepath.Join(o.Bin, "worker"), cfgPath, filepath.Join(tmp, "worker.log"))
	if err != nil {
		return nil, err
	}
	defer w.kill()
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", wk)
	if err := waitFor(ctx, readyTimeout, func() bool { return httpStatus(metricsURL+"/readyz") == 200 }); err != nil {
		return nil, fmt.Errorf("the worker did not become ready (%v); its log:\n%s", err, w.tail())
	}
	say("worker ready on %s (pid %d)", metricsURL, w.cmd.Process.Pid)

	// 5. A tick from the publisher, and an event of every kind from the emulator.
	pub := exec.CommandContext(ctx, filepath.Join(o.Bin, "publisher"), "tick", "--fleet", fl.Name, "--config", cfgPath)
	idOut, err := pub.Output()
	if err != nil {
		return nil, fmt.Errorf("publisher tick: %w", errorWithStderr(err))
	}
	sum := &Summary{CommandID: strings.TrimSpace(string(idOut))}
	say("publisher tick --fleet %s: command %s", fl.Name, sum.CommandID)

	if err := emu.Rebalance(ctx, ids[0]); err != nil {
		return nil, err
	}
	if err := emu.SpotInterruption(ctx, ids[0], 2*time.Second); err != nil {
		return nil, err
	}
	if _, err := c.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(ids[1]), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		return nil, fmt.Errorf("terminating %s: %w", ids[1], err)
	}
	say("rebalance recommendation and spot interruption for %s; %s terminated through its group (terminate hook)", ids[0], ids[1])
	if _, err := c.ssm.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(fl.TokenParameter), Value: aws.String("placeholder"), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	}); err != nil {
		return nil, fmt.Errorf("putting parameter %s: %w", fl.TokenParameter, err)
	}
	if _, err := c.cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String(fl.StackName), TemplateBody: aws.String(stackTemplate)}); err != nil {
		return nil, fmt.Errorf("creating stack %s: %w", fl.StackName, err)
	}
	say("token parameter %s written; stack %s created", fl.TokenParameter, fl.StackName)
	for _, body := range []string{`{"detail-type": 5, "source": "aws.ec2"}`, unknownEvent()} {
		if _, err := c.sqs.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(urls[cfg.Queues.Lifecycle.Name]), MessageBody: aws.String(body)}); err != nil {
			return nil, err
		}
	}
	say("sent a malformed body and an event of a kind nobody handles straight to %s", cfg.Queues.Lifecycle.Name)

	// 6. Wait for the worker to have seen everything, then summarize.
	var missing []string
	err = waitFor(ctx, eventsTimeout, func() bool {
		m, err := scrape(metricsURL + "/metrics")
		if err != nil {
			return false
		}
		sum.fill(m)
		missing = sum.missing()
		return len(missing) == 0
	})
	if err != nil {
		_ = c.fillWorld(ctx, emu, sum, fl.GroupName, urls, cfg.Queues)
		out := emu.Output()
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		return nil, fmt.Errorf("the worker did not see %s (%v); the emulator emitted %v; the worker's log:\n%s\nthe emulator's output:\n%s",
			strings.Join(missing, ", "), err, sum.Emitted, w.tail(), out)
	}
	if err := c.fillWorld(ctx, emu, sum, fl.GroupName, urls, cfg.Queues); err != nil {
		return nil, err
	}
	stopped := time.Now()
	if err := w.stop(cfg.StopTimeout + 2*time.Second); err != nil {
		return nil, fmt.Errorf("stopping the worker: %w; its log:\n%s", err, w.tail())
	}
	say("worker stopped on SIGTERM in %s (stop timeout %s)", time.Since(stopped).Round(time.Millisecond), cfg.StopTimeout)
	sum.print(out)
	return sum, nil
}

// stackTemplate is the smallest stack whose status changes the emulator reports.
const stackTemplate = `Resources:
  Marker:
    Type: AWS::SSM::Parameter
    Properties:
      Name: /runnerfleet/demo/stack-marker
      Type: String
      Value: demo
`

func unknownEvent() string {
	return fmt.Sprintf(`{"version":"0","id":"demo-unknown-%d","detail-type":"AWS API Call via CloudTrail","source":"aws.autoscaling","account":"123456789012","time":%q,"region":"us-east-1","resources":[],"detail":{}}`,
		time.Now().UnixNano(), time.Now().UTC().Format(time.RFC3339))
}

// checkFree refuses ports something listens on, naming them, before anything starts.
func checkFree(ports ...int) error {
	var errs []error
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			errs = append(errs, fmt.Errorf("port 127.0.0.1:%d is taken (a `make emulator` or another demo running?): stop it, or run the demo with --free-ports", p))
			continue
		}
		_ = l.Close()
	}
	return errors.Join(errs...)
}

type clients struct {
	sqs *awssqs.Client
	eb  *eventbridge.Client
	asg *autoscaling.Client
	ec2 *ec2.Client
	ssm *ssm.Client
	cfn *cloudformation.Client
}

const account = "123456789012"

func queueARN(name string) string {
	return "arn:aws:sqs:" + emulator.Region + ":" + account + ":" + name
}

// createQueues creates both queues with their DLQs (redrive after 5 receives) and returns the
// URL of each by name.
func (c clients) createQueues(ctx context.Context, q config.Queues) (map[string]string, error) {
	urls := map[string]string{}
	for _, spec := range []struct {
		queue config.Queue
		fifo  bool
	}{{q.Lifecycle, false}, {q.Control, true}} {
		for _, name := range []string{spec.queue.DeadLetter, spec.queue.Name} {
			attrs := map[string]string{"VisibilityTimeout": fmt.Sprint(int(spec.queue.VisibilityTimeout / time.Second))}
			if spec.fifo {
				attrs["FifoQueue"], attrs["ContentBasedDeduplication"] = "true", "true"
			}
			if name == spec.queue.Name {
				attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, queueARN(spec.queue.DeadLetter))
			}
			out, err := c.sqs.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
			if err != nil {
				return nil, fmt.Errorf("creating queue %s: %w", name, err)
			}
			urls[name] = aws.ToString(out.QueueUrl)
		}
	}
	return urls, nil
}

// createRules makes the EventBridge rules of deploy/ecs in small: instance events to the
// lifecycle queue; the fleet's tick and its parameter and stack events to the control queue,
// message group = fleet.
func (c clients) createRules(ctx context.Context, q config.Queues, fleetName, tickRule string) error {
	lifecycle, _ := json.Marshal(map[string]any{
		"source": []string{"aws.autoscaling", "aws.ec2"},
		"detail-type": []string{"EC2 Instance-launch Lifecycle Action", "EC2 Instance-terminate Lifecycle Action",
			"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation", "EC2 Instance State-change Notification"},
	})
	fleetEvents, _ := json.Marshal(map[string]any{
		"source":      []string{"aws.ssm", "aws.cloudformation"},
		"detail-type": []string{"Parameter Store Change", "CloudFormation Stack Status Change"},
	})
	group := &ebtypes.SqsParameters{MessageGroupId: aws.String(fleetName)}
	for _, r := range []struct {
		name, pattern, schedule, queue string
		sqs                            *ebtypes.SqsParameters
	}{
		{"runnerfleet-" + fleetName + "-lifecycle", string(lifecycle), "", q.Lifecycle.Name, nil},
		{"runnerfleet-" + fleetName + "-fleet-events", string(fleetEvents), "", q.Control.Name, group},
		{tickRule, "", "rate(1 minute)", q.Control.Name, group},
	} {
		in := &eventbridge.PutRuleInput{Name: aws.String(r.name)}
		if r.pattern != "" {
			in.EventPattern = aws.String(r.pattern)
		} else {
			in.ScheduleExpression = aws.String(r.schedule)
		}
		if _, err := c.eb.PutRule(ctx, in); err != nil {
			return fmt.Errorf("creating rule %s: %w", r.name, err)
		}
		if _, err := c.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(r.name), Targets: []ebtypes.Target{{
			Id: aws.String("queue"), Arn: aws.String(queueARN(r.queue)), SqsParameters: r.sqs,
		}}}); err != nil {
			return fmt.Errorf("targeting rule %s at %s: %w", r.name, r.queue, err)
		}
	}
	return nil
}

// createGroup makes the fleet's Auto Scaling group: two instances, a launch and a terminate hook.
func (c clients) createGroup(ctx context.Context, group string) error {
	lt := group + "-lt"
	if _, err := c.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); err != nil {
		return fmt.Errorf("creating launch template %s: %w", lt, err)
	}
	hook := func(name, transition string) astypes.LifecycleHookSpecification {
		return astypes.LifecycleHookSpecification{LifecycleHookName: aws.String(name), LifecycleTransition: aws.String(transition),
			HeartbeatTimeout: aws.Int32(hookTimeout), DefaultResult: aws.String("CONTINUE")}
	}
	if _, err := c.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(3), DesiredCapacity: aws.Int32(2),
		AvailabilityZones: []string{emulator.Region + "a"},
		LifecycleHookSpecificationList: []astypes.LifecycleHookSpecification{
			hook("launch", "autoscaling:EC2_INSTANCE_LAUNCHING"), hook("drain", "autoscaling:EC2_INSTANCE_TERMINATING"),
		},
	}); err != nil {
		return fmt.Errorf("creating group %s: %w", group, err)
	}
	return nil
}

func (c clients) instances(ctx context.Context, group string) []astypes.Instance {
	out, err := c.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) == 0 {
		return nil
	}
	return out.AutoScalingGroups[0].Instances
}

func (c clients) inService(ctx context.Context, group string) []string {
	var ids []string
	for _, i := range c.instances(ctx, group) {
		if i.LifecycleState == astypes.LifecycleStateInService {
			ids = append(ids, aws.ToString(i.InstanceId))
		}
	}
	sort.Strings(ids)
	return ids
}

// fillWorld adds the emulator's side to the summary: emitted events, hook timeouts, the group's
// instances and the DLQs' depth.
func (c clients) fillWorld(ctx context.Context, emu *emulator.Emulator, sum *Summary, group string, urls map[string]string, q config.Queues) error {
	log, err := emu.Log(ctx, 0)
	if err != nil {
		return fmt.Errorf("reading the emulator's log: %w", err)
	}
	sum.Emitted = map[string]int{}
	for _, ev := range log {
		switch ev.Kind {
		case "event.emitted":
			sum.Emitted[ev.String("detail_type")]++
		case "hook.timeout":
			sum.HookTimeouts++
		}
	}
	for _, i := range c.instances(ctx, group) {
		sum.Instances = append(sum.Instances, aws.ToString(i.InstanceId)+": "+string(i.LifecycleState))
	}
	sort.Strings(sum.Instances)
	for _, dlq := range []string{q.Lifecycle.DeadLetter, q.Control.DeadLetter} {
		out, err := c.sqs.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(urls[dlq]),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
		if err != nil {
			return fmt.Errorf("reading the depth of %s: %w", dlq, err)
		}
		var n int
		fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &n)
		sum.DeadLetterDepth += n
	}
	return nil
}

// scrape reads a Prometheus text exposition.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := netguard.HTTPClient(5 * time.Second).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// sumBy adds family's counters by the value of label (other labels summed over).
func sumBy(fams map[string]*dto.MetricFamily, family, label string) map[string]float64 {
	out := map[string]float64{}
	f, ok := fams[family]
	if !ok {
		return out
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func (s *Summary) fill(fams map[string]*dto.MetricFamily) {
	s.Received = sumBy(fams, "runnerfleet_messages_received_total", "kind")
	s.Acked = sumBy(fams, "runnerfleet_messages_acked_total", "kind")
	s.DeadLettered = sumBy(fams, "runnerfleet_messages_dead_lettered_total", "kind")
	s.Nacked = sumBy(fams, "runnerfleet_messages_nacked_total", "kind")
	s.Ticks = sumBy(fams, "runnerfleet_ticks_total", "source")
	s.Unknown = 0
	for _, v := range sumBy(fams, "runnerfleet_messages_unknown_total", "queue") {
		s.Unknown += v
	}
}

// missing names what the worker has not seen yet.
func (s *Summary) missing() []string {
	var out []string
	for _, k := range expectedKinds {
		if s.Received[string(k)] < 1 {
			out = append(out, "a "+string(k)+" message")
		}
	}
	if s.Ticks["command"] < 1 {
		out = append(out, "the published tick handled")
	}
	if s.Ticks["schedule"] < 1 {
		out = append(out, "a scheduled tick handled")
	}
	if s.DeadLettered["invalid"] < 1 {
		out = append(out, "the malformed body dead-lettered")
	}
	if s.Received["unknown"] < 1 {
		out = append(out, "the unknown event acked")
	}
	return out
}

func (s *Summary) print(out io.Writer) {
	fmt.Fprintln(out, "\nRunnerFleet demo summary (worker /metrics and the emulator's state)")
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "kind\treceived\tacked\tdead-lettered\tnacked\thandled by")
	kinds := make([]string, 0, len(s.Received))
	for k := range s.Received {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		by := "no handler yet: acked and counted as unknown"
		switch messages.Kind(k) {
		case messages.KindCommand, messages.KindScheduled:
			by = "tick handler"
		case "invalid":
			by = "DLQ with its reason"
		case messages.KindUnknown:
			by = "acked and counted as unknown"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%s\n", k, s.Received[k], s.Acked[k], s.DeadLettered[k], s.Nacked[k], by)
	}
	tw.Flush()
	fmt.Fprintf(out, "ticks handled: %.0f from the schedule rule, %.0f from `publisher tick` (command %s)\n", s.Ticks["schedule"], s.Ticks["command"], s.CommandID)
	fmt.Fprintf(out, "acked as unknown: %.0f; messages in the DLQs: %d\n", s.Unknown, s.DeadLetterDepth)
	var emitted []string
	for dt, n := range s.Emitted {
		emitted = append(emitted, fmt.Sprintf("%s ×%d", dt, n))
	}
	sort.Strings(emitted)
	fmt.Fprintf(out, "events the emulator emitted: %s\n", strings.Join(emitted, ", "))
	fmt.Fprintf(out, "lifecycle hooks that ended at their timeout (no drain handler yet): %d\n", s.HookTimeouts)
	fmt.Fprintf(out, "group instances now: %s\n", strings.Join(s.Instances, ", "))
}

// workerProcess is the worker binary run by the demo.
type workerProcess struct {
	cmd  *exec.Cmd
	log  *os.File
	path string
	done chan error
}

func startWorker(ctx context.Context, bin, cfgPath, logPath string) (*workerProcess, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the worker: %w", err)
	}
	w := &workerProcess{cmd: cmd, log: f, path: logPath, done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait() }()
	return w, nil
}

// stop sends SIGTERM and waits up to limit for a clean exit.
func (w *workerProcess) stop(limit time.Duration) error {
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(limit):
		return fmt.Errorf("still running %s after SIGTERM", limit)
	}
}

// kill ends the worker by its PID if it still runs.
func (w *workerProcess) kill() {
	select {
	case err := <-w.done:
		w.done <- err
	default:
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	w.log.Close()
}

// tail returns the end of the worker's log.
func (w *workerProcess) tail() string {
	b, _ := os.ReadFile(w.path)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func httpStatus(url string) int {
	resp, err := netguard.HTTPClient(5 * time.Second).Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func errorWithStderr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(bytes.TrimSpace(ee.Stderr)) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
