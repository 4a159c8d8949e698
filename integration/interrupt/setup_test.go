// Package interrupt_test checks issue 7 on the local world (AWS emulator + runner simulator):
// spot interruption and rebalance notices, the launch gate, and `publisher drain`. A worker runs
// in this process the way cmd/worker is to wire it: one router over the lifecycle queue (drain,
// interrupt, launch handlers) and the FIFO control queue (drain commands); the scale handler's
// Group decorated with the instance marks; ticks run as the control queue would run them
// (interrupt.BeforeTick around the scale handler). Assertions are on final states: the group,
// the emulator's log, the simulator, the state table.
package interrupt_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/drain"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/launch"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/asg"
	"github.com/runnerfleet/runnerfleet/infra/aws/lifecycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/marks"
	"github.com/runnerfleet/runnerfleet/infra/aws/runcmd"
	"github.com/runnerfleet/runnerfleet/infra/aws/scalestate"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/drainadapter"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/router"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/integration/drain/worker"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/integration/world"
	"github.com/runnerfleet/runnerfleet/messages"
)

// waitLimit bounds every wait for a final state (a busy 2-core machine).
const waitLimit = 2 * time.Minute

const eventPattern = `{"source":["aws.autoscaling","aws.ec2"]}`

type env struct {
	t      *testing.T
	w      *world.World
	cfg    aws.Config
	asg    *autoscaling.Client
	ec2    *ec2.Client
	sqs    *awssqs.Client
	table  *state.Table
	tname  string
	queue  string
	dlq    string
	ctl    string
	ctlDLQ string
	marks  *marks.Store
	logs   *lockedBuf

	ih *interrupt.Handler
	lh *launch.Handler
	sh *scale.Handler
	im *interrupt.Metrics
}

func newEnv(t *testing.T, concurrent int) *env {
	t.Helper()
	w := world.Start(t, world.Options{Sim: runnersim.Config{Concurrent: concurrent}})
	cfg := w.Emulator.AWSConfig(t)
	e := &env{t: t, w: w, cfg: cfg, asg: autoscaling.NewFromConfig(cfg), ec2: ec2.NewFromConfig(cfg), sqs: awssqs.NewFromConfig(cfg), logs: &lockedBuf{}}
	ctx := context.Background()
	e.tname = emulator.UniqueName(t, "runnerfleet-state")
	ddb := dynamodb.NewFromConfig(cfg)
	if err := state.CreateTable(ctx, ddb, e.tname); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.table, err = state.New(ddb, e.tname); err != nil {
		t.Fatal(err)
	}
	if e.marks, err = marks.NewStore(e.table); err != nil {
		t.Fatal(err)
	}
	e.dlq = e.newQueue(emulator.UniqueName(t, "runnerfleet-dlq"), false)
	e.queue = e.newQueue(emulator.UniqueName(t, "runnerfleet-lifecycle"), false)
	e.ctlDLQ = e.newQueue(emulator.UniqueName(t, "runnerfleet-ctl-dlq")+".fifo", true)
	e.ctl = e.newQueue(emulator.UniqueName(t, "runnerfleet-ctl")+".fifo", true)
	eb := eventbridge.NewFromConfig(cfg)
	rule := emulator.UniqueName(t, "runnerfleet-rule")
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(rule), EventPattern: aws.String(eventPattern)}); err != nil {
		t.Fatal(err)
	}
	qname := e.queue[strings.LastIndex(e.queue, "/")+1:]
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(rule),
		Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String("arn:aws:sqs:" + emulator.Region + ":123456789012:" + qname)}}}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) newQueue(name string, fifo bool) string {
	e.t.Helper()
	in := &awssqs.CreateQueueInput{QueueName: aws.String(name)}
	if fifo {
		in.Attributes = map[string]string{"FifoQueue": "true"}
	}
	q, err := e.sqs.CreateQueue(context.Background(), in)
	if err != nil {
		e.t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return aws.ToString(q.QueueUrl)
}

type groupSpec struct {
	name                    string
	desired, min, max       int32
	terminateHook, gateHook bool
	// hookTimeout is the terminate hook's heartbeat timeout in seconds; default 10.
	hookTimeout int32
}

// group creates a group (with a terminate hook and/or a launch hook, named as the fleet stack
// names them: fleet.DefaultTerminateHook, fleet.DefaultLaunchHook) and returns its fleet settings
// pointing at the simulator.
func (e *env) group(g groupSpec) fleet.Settings {
	e.t.Helper()
	ctx := context.Background()
	name := emulator.UniqueName(e.t, "runnerfleet-"+g.name)
	if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name + "-lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		e.t.Fatal(err)
	}
	var hooks []astypes.LifecycleHookSpecification
	if g.terminateHook {
		hooks = append(hooks, astypes.LifecycleHookSpecification{LifecycleHookName: aws.String(fleet.DefaultTerminateHook),
			LifecycleTransition: aws.String(lifecycle.Terminating), HeartbeatTimeout: aws.Int32(cmp.Or(g.hookTimeout, 10)), DefaultResult: aws.String("CONTINUE")})
	}
	if g.gateHook {
		hooks = append(hooks, astypes.LifecycleHookSpecification{LifecycleHookName: aws.String(fleet.DefaultLaunchHook),
			LifecycleTransition: aws.String(messages.TransitionLaunching), HeartbeatTimeout: aws.Int32(60), DefaultResult: aws.String("ABANDON")})
	}
	if _, err := e.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(name + "-lt"), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(g.min), MaxSize: aws.Int32(g.max), DesiredCapacity: aws.Int32(g.desired),
		AvailabilityZones: []string{"us-east-1a"}, LifecycleHookSpecificationList: hooks,
	}); err != nil {
		e.t.Fatal(err)
	}
	return fleet.Settings{Name: g.name, GroupName: name, MetricsURL: e.w.MetricsURLTemplate(),
		Drain: fleet.DrainSettings{PollInterval: time.Second, CommandRetries: 2}}
}

type noSink struct{}

func (noSink) Publish(context.Context, scale.FleetMetrics) error { return nil }

// start runs the worker for the fleets until the test ends.
func (e *env) start(fleets []fleet.Settings, gates map[string]launch.Gate) {
	e.t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	as := autoscaling.NewFromConfig(e.cfg)
	tab := e.table
	cmds, err := runcmd.New(ssm.NewFromConfig(e.cfg))
	must(e.t, err)
	lc, err := lifecycle.New(as)
	must(e.t, err)
	pub, err := sqs.NewPublisher(sqs.PublisherConfig{}, e.sqs, logger)
	must(e.t, err)
	scr, err := scrape.New(scrape.Config{Timeout: time.Second}, netguard.HTTPClient(0))
	must(e.t, err)
	runners, err := marks.NewRunners(netguard.HTTPClient(time.Second), fleets, nil)
	must(e.t, err)
	groups, err := marks.NewGroups(as)
	must(e.t, err)
	drains, err := marks.NewDrains(tab)
	must(e.t, err)

	dh, err := drain.New(drain.Config{Fleets: fleets, StepTimeout: 3 * time.Second, CommandPoll: 300 * time.Millisecond,
		RetryBase: 500 * time.Millisecond, RetryMax: 2 * time.Second, SweepGrace: time.Second},
		drain.Deps{Store: tab, Commands: cmds, Lifecycle: lc, Jobs: worker.JobsFunc(scr, fleets),
			FollowUps: drainadapter.FollowUps(pub, e.queue), Logger: logger})
	must(e.t, err)
	e.im = interrupt.NewMetrics(prometheus.NewRegistry())
	e.ih, err = interrupt.New(interrupt.Config{Fleets: fleets}, interrupt.Deps{Groups: groups, Commands: marks.Commands{Sender: cmds}, Owners: marks.Owners{API: e.ec2}, Jobs: runners,
		Marks: e.marks, Drains: drains, Logger: logger, Metrics: e.im})
	must(e.t, err)
	e.lh, err = launch.New(launch.Config{Fleets: fleets, Gates: gates, SweepGrace: time.Second},
		launch.Deps{Store: tab, Lifecycle: lc, Health: runners, FollowUps: marks.LaunchFollowUps{Publisher: pub, Queue: e.queue}, Logger: logger})
	must(e.t, err)
	g, err := asg.New(as, e.ec2)
	must(e.t, err)
	store, err := scalestate.New(tab)
	must(e.t, err)
	e.sh, err = scale.New(scale.Config{Fleets: fleets},
		scale.Deps{Group: marks.Group{Group: g, Marks: e.marks}, Scraper: scr, Metrics: noSink{}, State: store, Registerer: prometheus.NewRegistry()}, logger)
	must(e.t, err)

	reg := router.Registry{
		messages.KindTerminateAction:  dh.Handle,
		messages.KindDrainStep:        dh.Handle,
		messages.KindLaunchAction:     e.lh.Handle,
		messages.KindSpotInterruption: e.ih.Handle,
		messages.KindRebalance:        e.ih.Handle,
		messages.KindStateChange:      e.ih.Handle,
		messages.KindCommand:          e.ih.Handle, // drain commands only in these tests
	}
	r, err := router.New(router.Config{HandlerTimeout: 30 * time.Second, CloseTimeout: 5 * time.Second,
		Retry: router.Retry{MaxRetries: 2, InitialInterval: 200 * time.Millisecond, MaxInterval: time.Second}},
		reg, pub, observe.NewMetrics(prometheus.NewRegistry()), logger, nil)
	must(e.t, err)
	for _, q := range []struct{ role, url, dlq string }{{"lifecycle", e.queue, e.dlq}, {"control", e.ctl, e.ctlDLQ}} {
		sub, err := sqs.NewSubscriber(sqs.SubscriberConfig{WaitTime: time.Second, VisibilityTimeout: 5 * time.Second,
			CloseTimeout: 5 * time.Second, MaxInFlight: 20}, e.sqs, logger)
		must(e.t, err)
		must(e.t, r.AddQueue(router.Queue{Name: q.role, Topic: q.url, DeadLetter: q.dlq, Subscriber: sub}))
		e.t.Cleanup(func() { _ = sub.Close() })
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := r.Run(runCtx); err != nil {
			logger.Error("router stopped", "error", err)
		}
	}()
	go func() {
		defer wg.Done()
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tk.C:
				_, _ = dh.Sweep(runCtx)
				_, _ = e.lh.Sweep(runCtx)
			}
		}
	}()
	select {
	case <-r.Running():
	case <-time.After(10 * time.Second):
		e.t.Fatal("router did not start")
	}
	e.t.Cleanup(func() {
		_ = r.Close()
		cancel()
		wg.Wait()
		_ = pub.Close()
		if e.t.Failed() {
			e.t.Logf("worker log (tail):\n%s", tail(e.logs.String(), 12000))
		}
	})
}

// tick runs one tick of the fleet as the control queue would: replace marked instances, decide.
func (e *env) tick(name string) {
	e.t.Helper()
	c := messages.NewCommand(name, messages.CommandTick, time.Now())
	msg := &messages.Message{Kind: messages.KindCommand, ID: c.ID, Time: c.IssuedAt, Payload: &c}
	if err := e.ih.BeforeTick(e.sh.Handle)(context.Background(), msg); err != nil {
		e.t.Fatalf("tick of %s: %v", name, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// members returns the group's instances by id.
func (e *env) members(group string) map[string]astypes.Instance {
	e.t.Helper()
	out, err := e.asg.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		e.t.Fatalf("describing %s: %v", group, err)
	}
	m := map[string]astypes.Instance{}
	for _, in := range out.AutoScalingGroups[0].Instances {
		m[aws.ToString(in.InstanceId)] = in
	}
	return m
}

func (e *env) desired(group string) int32 {
	e.t.Helper()
	out, err := e.asg.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		e.t.Fatalf("describing %s: %v", group, err)
	}
	return aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity)
}

// inService waits for n InService instances of the group and returns their ids.
func (e *env) inService(group string, n int) []string {
	e.t.Helper()
	var ids []string
	e.eventually(fmt.Sprintf("%d InService instances of %s", n, group), func() bool {
		ids = ids[:0]
		for id, in := range e.members(group) {
			if in.LifecycleState == astypes.LifecycleStateInService {
				ids = append(ids, id)
			}
		}
		return len(ids) >= n
	})
	return ids
}

func (e *env) sim(id string) runnersim.InstanceState {
	st, _ := e.w.Sim.State().Instance(id)
	return st
}

func (e *env) jobs(d time.Duration, n int) []string {
	e.t.Helper()
	var jobs []runnersim.Job
	for range n {
		jobs = append(jobs, runnersim.Job{DurationMS: d.Milliseconds()})
	}
	ids, err := e.w.Sim.AddJobs(jobs)
	must(e.t, err)
	return ids
}

func (e *env) log() []emulator.LogEvent {
	e.t.Helper()
	evs, err := e.w.Log(context.Background(), 0)
	must(e.t, err)
	return evs
}

func of(evs []emulator.LogEvent, kind, instance string) []emulator.LogEvent {
	var out []emulator.LogEvent
	for _, ev := range evs {
		if ev.Kind == kind && (instance == "" || ev.String("instance_id") == instance) {
			out = append(out, ev)
		}
	}
	return out
}

// killed is the count the emulator logged when the instance terminated (-1: not terminated yet).
func killed(evs []emulator.LogEvent, instance string) int {
	n := -1
	// The emulator's count: "instance.jobs_killed" (older emulators: "job.killed" with
	// reported_by "emulator"; the simulator's own job.killed events name one job each).
	for _, ev := range append(of(evs, "instance.jobs_killed", instance), of(evs, "job.killed", instance)...) {
		if ev.String("reported_by") == "emulator" {
			n = max(n, 0) + ev.Int("killed")
		}
	}
	return n
}

// decision returns the worker's decision records whose msg is msg and that mention instance.
func (e *env) decisions(msg, instance string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if !strings.Contains(line, `"msg":"`+msg+`"`) || !strings.Contains(line, instance) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
