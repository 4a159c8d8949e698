package drain_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
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

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/integration/drain/worker"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/gobuild"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/integration/world"
)

// waitLimit bounds every wait for a final state; generous on a busy 2-core machine.
const waitLimit = 3 * time.Minute

const terminatePattern = `{"source":["aws.autoscaling"],"detail-type":["EC2 Instance-terminate Lifecycle Action"]}`

// env is one test's local world with a fleet (group + terminate hook), its lifecycle queue
// (and DLQ) fed by a rule, the steps queue of the drains' follow-ups (as the worker stack has
// it), and the state table.
type env struct {
	t     testing.TB
	w     *world.World
	asg   *autoscaling.Client
	ec2   *ec2.Client
	sqs   *awssqs.Client
	eb    *eventbridge.Client
	group string
	queue string
	steps string
	dlq   string
	table string
	// stateEndpoint and ssmEndpoint are the DynamoDB and SSM emulators when they run apart
	// (envSpec.servicesApart); empty: the world's emulator.
	stateEndpoint, ssmEndpoint string
	fleet                      fleet.Settings
	events                     string // rule name
	// logs keeps the in-process workers' log lines (printed for a failing test's victims).
	logs world.Lines
	// stepTimeout is the workers' step timeout (lease: 3×); default 3 s.
	stepTimeout time.Duration
	// commandPoll, sweepGrace and sweepEvery tune the workers; defaults 300 ms, 1 s, 1 s.
	commandPoll, sweepGrace, sweepEvery time.Duration
	// maxInFlight bounds each worker's messages in flight; default 20.
	maxInFlight int
}

type envSpec struct {
	instances int
	// hookTimeout is the terminate hook's heartbeat timeout (seconds).
	hookTimeout int32
	concurrent  int
	documents   fleet.Documents
	poll        time.Duration
	// servicesApart runs DynamoDB (the state table) and SSM each in an emulator process of its
	// own, beside the world's (SQS, EventBridge and Auto Scaling, which moto couples: a lifecycle
	// hook's event reaches the queue inside one process). In AWS a drain's state write or
	// SendCommand waits on nobody's SQS calls; in one emulator process every call of every
	// service waits for the same Python interpreter lock. The latency benchmark, whose point is
	// a new drain's first step while earlier drains keep stepping, runs so. The tests, which
	// assert outcomes and count SSM commands in the world's log, share one emulator.
	servicesApart bool
}

func newEnv(t testing.TB, spec envSpec) *env {
	t.Helper()
	if spec.concurrent == 0 {
		spec.concurrent = 4
	}
	if spec.poll == 0 {
		spec.poll = time.Second
	}
	w := world.Start(t, world.Options{Sim: runnersim.Config{Concurrent: spec.concurrent}})
	cfg := w.Emulator.AWSConfig(t)
	e := &env{t: t, w: w, asg: autoscaling.NewFromConfig(cfg), ec2: ec2.NewFromConfig(cfg),
		sqs: awssqs.NewFromConfig(cfg), eb: eventbridge.NewFromConfig(cfg)}
	ctx := context.Background()

	e.table = emulator.UniqueName(t, "runnerfleet-state")
	if spec.servicesApart {
		e.stateEndpoint = emulator.Start(t, emulator.Options{}).Endpoint
		e.ssmEndpoint = emulator.Start(t, emulator.Options{RunnerSim: w.Sim.URL()}).Endpoint
	}
	if err := state.CreateTable(ctx, e.dynamo(), e.table); err != nil {
		t.Fatal(err)
	}
	e.dlq = e.newQueue(emulator.UniqueName(t, "runnerfleet-dlq"))
	e.queue = e.newQueue(emulator.UniqueName(t, "runnerfleet-lifecycle"))
	e.steps = e.newQueue(emulator.UniqueName(t, "runnerfleet-steps"))
	e.events = e.rule(e.queue)

	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatalf("CreateLaunchTemplate: %v", err)
	}
	e.group = emulator.UniqueName(t, "runnerfleet-asg")
	if _, err := e.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(e.group),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(int32(spec.instances)), DesiredCapacity: aws.Int32(int32(spec.instances)),
		AvailabilityZones: []string{"us-east-1a"},
		LifecycleHookSpecificationList: []astypes.LifecycleHookSpecification{{
			LifecycleHookName: aws.String(fleet.DefaultTerminateHook), LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"),
			HeartbeatTimeout: aws.Int32(spec.hookTimeout), DefaultResult: aws.String("CONTINUE"),
		}},
	}); err != nil {
		t.Fatalf("CreateAutoScalingGroup: %v", err)
	}
	e.fleet = fleet.Settings{
		Name: "blue", GroupName: e.group, MetricsURL: w.MetricsURLTemplate(), Documents: spec.documents,
		Drain: fleet.DrainSettings{PollInterval: spec.poll, CommandRetries: 2},
	}
	e.eventually("every instance registered with the simulator", func() bool {
		return len(e.simInstances()) == spec.instances
	})
	return e
}

func (e *env) newQueue(name string) string {
	e.t.Helper()
	q, err := e.sqs.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		e.t.Fatalf("CreateQueue: %v", err)
	}
	return aws.ToString(q.QueueUrl)
}

// rule delivers terminate lifecycle events to the queue at url.
func (e *env) rule(url string) string {
	e.t.Helper()
	ctx := context.Background()
	name := emulator.UniqueName(e.t, "runnerfleet-rule")
	if _, err := e.eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventPattern: aws.String(terminatePattern)}); err != nil {
		e.t.Fatalf("PutRule: %v", err)
	}
	qname := url[strings.LastIndex(url, "/")+1:]
	if _, err := e.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule:    aws.String(name),
		Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String("arn:aws:sqs:us-east-1:123456789012:" + qname)}},
	}); err != nil {
		e.t.Fatalf("PutTargets: %v", err)
	}
	return name
}

// dynamo is a DynamoDB client of the state table's emulator.
func (e *env) dynamo() *dynamodb.Client {
	cfg := e.w.Emulator.AWSConfig(e.t)
	if e.stateEndpoint == "" {
		return dynamodb.NewFromConfig(cfg)
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(e.stateEndpoint) })
}

// ssm is an SSM client of the SSM emulator.
func (e *env) ssm() *ssm.Client {
	cfg := e.w.Emulator.AWSConfig(e.t)
	if e.ssmEndpoint == "" {
		return ssm.NewFromConfig(cfg)
	}
	return ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(e.ssmEndpoint) })
}

func (e *env) workerConfig(owner string) worker.Config {
	return worker.Config{
		Endpoint: e.w.Emulator.Endpoint, Region: emulator.Region, QueueURL: e.queue, StepsQueueURL: e.steps,
		DLQURL: e.dlq, Table: e.table, StateEndpoint: e.stateEndpoint, SSMEndpoint: e.ssmEndpoint, Fleets: []fleet.Settings{e.fleet}, StepTimeout: cmp.Or(e.stepTimeout, 3*time.Second),
		CommandPoll: cmp.Or(e.commandPoll, 300*time.Millisecond), RetryBase: 500 * time.Millisecond, RetryMax: 2 * time.Second,
		SweepGrace: cmp.Or(e.sweepGrace, time.Second), SweepEvery: cmp.Or(e.sweepEvery, time.Second), Owner: owner,
		MaxInFlight: e.maxInFlight,
	}
}

// startWorker runs a drain worker in this process, stopped at cleanup.
func (e *env) startWorker(owner string) *worker.Worker {
	e.t.Helper()
	return e.startWorkerWith(owner, nil)
}

// startWorkerWith is startWorker with a config tweak.
func (e *env) startWorkerWith(owner string, tweak func(*worker.Config)) *worker.Worker {
	e.t.Helper()
	wc := e.workerConfig(owner)
	if tweak != nil {
		tweak(&wc)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs.Writer(e.t), &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", owner)
	wk, err := worker.Start(context.Background(), wc, logger)
	if err != nil {
		e.t.Fatalf("starting drain worker %s: %v", owner, err)
	}
	e.t.Cleanup(wk.Stop)
	return wk
}

var ()

// proc is a drainworker process.
type proc struct {
	cmd *exec.Cmd
	out *os.File
}

// startProcess runs the drainworker binary (built once per test binary) with this env's config.
func (e *env) startProcess(owner string) *proc {
	e.t.Helper()
	return e.startProcessWith(owner, nil)
}

// startProcessWith is startProcess with a config tweak.
func (e *env) startProcessWith(owner string, tweak func(*worker.Config)) *proc {
	e.t.Helper()
	binPath := gobuild.Once(e.t, "github.com/runnerfleet/runnerfleet/integration/drain/drainworker")
	dir := e.t.TempDir()
	cfgPath := filepath.Join(dir, owner+".json")
	wc := e.workerConfig(owner)
	if tweak != nil {
		tweak(&wc)
	}
	b, _ := json.Marshal(wc)
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, owner+".log"))
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(binPath, cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out}
	e.t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		out.Close()
		if e.t.Failed() {
			if b, err := os.ReadFile(out.Name()); err == nil {
				e.t.Logf("%s output (tail):\n%s", owner, tail(string(b), 4000))
			}
		}
	})
	e.eventually(owner+" ready", func() bool {
		b, _ := os.ReadFile(out.Name())
		if strings.Contains(string(b), "drainworker:") {
			e.t.Fatalf("%s failed to start:\n%s", owner, b)
		}
		return strings.Contains(string(b), "drain worker ready")
	})
	return p
}

// decisions counts the drain decision records in the process's log, and those whose step's
// result was dropped because another replica had advanced the drain.
func (p *proc) decisions() (all, lost int) {
	b, _ := os.ReadFile(p.out.Name())
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"msg":"drain decision"`) {
			all++
			if strings.Contains(line, "lost the drain to another replica") {
				lost++
			}
		}
	}
	return all, lost
}

func (p *proc) signal(sig syscall.Signal) error { return syscall.Kill(p.cmd.Process.Pid, sig) }

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("%s did not happen within %s", what, waitLimit)
}

func (e *env) simInstances() []runnersim.InstanceState {
	var out []runnersim.InstanceState
	for _, in := range e.w.Sim.State().Instances {
		if in.Group == e.group {
			out = append(out, in)
		}
	}
	return out
}

func (e *env) groupInstances() map[string]astypes.Instance {
	e.t.Helper()
	out, err := e.asg.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{e.group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		e.t.Fatalf("DescribeAutoScalingGroups: %v", err)
	}
	m := map[string]astypes.Instance{}
	for _, in := range out.AutoScalingGroups[0].Instances {
		m[aws.ToString(in.InstanceId)] = in
	}
	return m
}

func (e *env) instanceIDs() []string {
	var ids []string
	for id := range e.groupInstances() {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// jobs queues jobs of the given durations and waits until all run.
func (e *env) jobs(durations ...time.Duration) {
	e.t.Helper()
	var js []runnersim.Job
	for _, d := range durations {
		js = append(js, runnersim.Job{DurationMS: d.Milliseconds()})
	}
	if _, err := e.w.Sim.AddJobs(js); err != nil {
		e.t.Fatal(err)
	}
	e.eventually("every job running", func() bool {
		st := e.w.Sim.State()
		return st.Totals.Queued == 0 && st.Totals.Started >= len(durations)
	})
}

func (e *env) terminate(id string) {
	e.t.Helper()
	if _, err := e.asg.TerminateInstanceInAutoScalingGroup(context.Background(), &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		e.t.Fatalf("TerminateInstanceInAutoScalingGroup(%s): %v", id, err)
	}
}

func (e *env) waitTerminated(ids ...string) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("termination of %d instance(s)", len(ids)), func() bool {
		in := e.groupInstances()
		for _, id := range ids {
			if _, ok := in[id]; ok {
				return false
			}
		}
		return true
	})
}

// log is the emulator's transition log.
func (e *env) log() []emulator.LogEvent {
	e.t.Helper()
	evs, err := e.w.Log(context.Background(), 0)
	if err != nil {
		e.t.Fatalf("reading the transition log: %v", err)
	}
	return evs
}

type logView []emulator.LogEvent

func (l logView) of(kind, instance string) []emulator.LogEvent {
	var out []emulator.LogEvent
	for _, ev := range l {
		if ev.Kind == kind && (instance == "" || ev.String("instance_id") == instance) {
			out = append(out, ev)
		}
	}
	return out
}

// commands returns the distinct SSM command ids sent to instance with a document ending in role,
// and the seq of each command's first log event.
func (l logView) commands(instance, role string) map[string]int {
	out := map[string]int{}
	for _, ev := range l.of("ssm.command", instance) {
		if strings.HasSuffix(ev.String("document"), role) {
			if _, seen := out[ev.String("command_id")]; !seen {
				out[ev.String("command_id")] = ev.Seq
			}
		}
	}
	return out
}

// killed counts jobs killed on instance ("" = any) from the log: the simulator writes one
// job.killed per job (job_id), the emulator one instance.jobs_killed per terminated instance
// with the count; the larger of the two totals is returned (they agree unless a report is lost).
func (l logView) killed(instance string) int {
	sim, emu := len(l.of(emulator.KindJobKilled, instance)), 0
	for _, ev := range l.of(emulator.KindInstanceJobsKilled, instance) {
		emu += ev.Int("killed")
	}
	return max(sim, emu)
}

// killed counts killed jobs in the simulator's state.
func (e *env) killed() int {
	n := 0
	for _, in := range e.w.Sim.State().Instances {
		n += in.Killed
	}
	return n
}

func (e *env) dump(l logView, instance string) {
	e.t.Helper()
	var b strings.Builder
	for _, ev := range l {
		if instance == "" || ev.String("instance_id") == instance {
			fields, _ := json.Marshal(ev.Fields)
			fmt.Fprintf(&b, "%d %s %s %s\n", ev.Seq, ev.Time.Format("15:04:05.000"), ev.Kind, fields)
		}
	}
	e.t.Logf("transition log:\n%s", tail(b.String(), 12000))
}
