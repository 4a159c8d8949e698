// Package scale_test runs the scale handler against the local world: the AWS emulator (Auto
// Scaling, EC2, DynamoDB, CloudWatch) and the runner simulator serving gitlab-runner metrics.
// Every assertion is on final state: the group, the simulator's jobs, the handler's /metrics.
package scale_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/asg"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/infra/aws/scalestate"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/integration/world"
	"github.com/runnerfleet/runnerfleet/messages"
)

// waitLimit bounds waiting for the simulator to reach a state; the state is asserted, not time.
const waitLimit = 60 * time.Second

// scrapeTimeout is the per-runner timeout of the tests' scraper: a hung runner costs this much.
const scrapeTimeout = time.Second

// env is one local world with the AWS clients and a state table.
type env struct {
	w     *world.World
	asg   *autoscaling.Client
	ec2   *ec2.Client
	table *state.Table
	cw    cwmetrics.API
}

func newEnv(t *testing.T) *env {
	t.Helper()
	w := world.Start(t, world.Options{Sim: runnersim.Config{Concurrent: 2}})
	cfg := w.Emulator.AWSConfig(t)
	ddb := dynamodb.NewFromConfig(cfg)
	name := "runnerfleet-state-" + fmt.Sprint(time.Now().UnixNano())
	if err := state.CreateTable(context.Background(), ddb, name); err != nil {
		t.Fatal(err)
	}
	tbl, err := state.New(ddb, name)
	if err != nil {
		t.Fatal(err)
	}
	return &env{w: w, asg: autoscaling.NewFromConfig(cfg), ec2: ec2.NewFromConfig(cfg), table: tbl, cw: cwmetrics.NewClient(cfg)}
}

// group creates a launch template and a group of desired instances, and waits until the
// simulator runs a runner for each.
func (e *env) group(t *testing.T, name string, desired int32) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name + "-lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatal(err)
	}
	if _, err := e.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(name + "-lt"), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(1), MaxSize: aws.Int32(8), DesiredCapacity: aws.Int32(desired),
		AvailabilityZones: []string{"us-east-1a"},
	}); err != nil {
		t.Fatal(err)
	}
	e.waitSim(t, fmt.Sprintf("%d runners of %s", desired, name), func(st runnersim.State) bool {
		return len(live(st, name)) == int(desired)
	})
}

func (e *env) waitSim(t *testing.T, what string, cond func(runnersim.State) bool) runnersim.State {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		st := e.w.Sim.State()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; simulator state: %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// live lists the simulator's instances of a group that are not terminated.
func live(st runnersim.State, group string) []runnersim.InstanceState {
	var out []runnersim.InstanceState
	for _, in := range st.Instances {
		if in.Group == group && in.Process != runnersim.ProcessTerminated {
			out = append(out, in)
		}
	}
	return out
}

type worker struct {
	h    *scale.Handler
	reg  *prometheus.Registry
	logs *bytes.Buffer
	mu   *sync.Mutex
}

// worker builds a scale handler as cmd/worker does, over the world's real adapters.
func (e *env) worker(t *testing.T, f fleet.Settings) worker {
	t.Helper()
	g, err := asg.New(e.asg, e.ec2)
	if err != nil {
		t.Fatal(err)
	}
	scr, err := scrape.New(scrape.Config{Timeout: scrapeTimeout}, netguard.HTTPClient(0))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := cwmetrics.New(e.cw, "RunnerFleet")
	if err != nil {
		t.Fatal(err)
	}
	store, err := scalestate.New(e.table)
	if err != nil {
		t.Fatal(err)
	}
	wk := worker{reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}, mu: &sync.Mutex{}}
	h, err := scale.New(scale.Config{Fleets: []fleet.Settings{f}},
		scale.Deps{Group: g, Scraper: scr, Metrics: sink, State: store, Registerer: wk.reg},
		slog.New(slog.NewJSONHandler(lockedWriter{wk.logs, wk.mu}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	wk.h = h
	return wk
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (wk worker) decisions() int {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	return strings.Count(wk.logs.String(), `"msg":"scale decision"`)
}

func (wk worker) lastDecision() string {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(wk.logs.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"msg":"scale decision"`) {
			return lines[i]
		}
	}
	return ""
}

func (wk worker) gauge(t *testing.T, name, fleetName string) float64 {
	t.Helper()
	mfs, err := wk.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "fleet" && lp.GetValue() == fleetName {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{fleet=%q} on /metrics", name, fleetName)
	return 0
}

func (wk worker) tick(t *testing.T, fleetName string, n int) {
	t.Helper()
	if err := wk.h.Tick(context.Background(), fleetName, fmt.Sprintf("tick-%s-%d", fleetName, n)); err != nil {
		t.Fatalf("tick %d: %v", n, err)
	}
	t.Logf("tick %d: %s", n, wk.lastDecision())
}

func (e *env) describe(t *testing.T, name string) astypes.AutoScalingGroup {
	t.Helper()
	out, err := e.asg.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Fatalf("describing %s: %v", name, err)
	}
	return out.AutoScalingGroups[0]
}

// fastPolicy lets a test see scale-in without waiting minutes: the window and minimum uptime are
// a millisecond, so the second tick may remove what the first saw idle.
func fastPolicy() fleet.Policy {
	return fleet.Policy{MinInstances: 1, MaxInstances: 6, ScaleInWindow: time.Millisecond, MinUptime: time.Millisecond, MaxScaleInStep: 3}
}

func settings(e *env, name string, p fleet.Policy) fleet.Settings {
	return fleet.Settings{Name: name, GroupName: name, MetricsURL: e.w.MetricsURLTemplate(), Policy: p}
}

// Jobs pile up in the queue → the next tick scales out.
func TestScaleOutWhenJobsPileUp(t *testing.T) {
	e := newEnv(t)
	name := "runnerfleet-out"
	e.group(t, name, 1)
	wk := e.worker(t, settings(e, name, fastPolicy()))

	wk.tick(t, name, 1) // the fleet idle: steady
	if d := aws.ToInt32(e.describe(t, name).DesiredCapacity); d != 1 {
		t.Fatalf("idle fleet changed desired to %d", d)
	}
	jobs := make([]runnersim.Job, 8)
	for i := range jobs {
		jobs[i] = runnersim.Job{ID: fmt.Sprintf("job-%d", i), DurationMS: 60_000}
	}
	if _, err := e.w.Sim.AddJobs(jobs); err != nil {
		t.Fatal(err)
	}
	e.waitSim(t, "the one runner full with jobs queued", func(st runnersim.State) bool {
		r := live(st, name)
		return len(r) == 1 && len(r[0].Running) == 2
	})

	wk.tick(t, name, 2)
	grp := e.describe(t, name)
	if d := aws.ToInt32(grp.DesiredCapacity); d <= 1 {
		t.Fatalf("desired %d after jobs piled up; decision: %s", d, wk.lastDecision())
	}
	if !strings.Contains(wk.lastDecision(), `"action":"scale_out"`) {
		t.Errorf("decision is not a scale-out: %s", wk.lastDecision())
	}
	st := e.waitSim(t, "the new runners", func(st runnersim.State) bool {
		return len(live(st, name)) == int(aws.ToInt32(grp.DesiredCapacity))
	})
	if st.Totals.Killed != 0 {
		t.Errorf("%d jobs killed", st.Totals.Killed)
	}
	if got := wk.gauge(t, "runnerfleet_fleet_active_jobs", name); got != 2 {
		t.Errorf("/metrics active_jobs = %v, want 2", got)
	}
}

// Load gone → only idle instances are removed, the busy one is protected and untouched, 0 jobs
// killed.
func TestScaleInRemovesOnlyIdle(t *testing.T) {
	e := newEnv(t)
	name := "runnerfleet-in"
	e.group(t, name, 3)
	if _, err := e.w.Sim.AddJobs([]runnersim.Job{{ID: "long-job", DurationMS: 120_000}}); err != nil {
		t.Fatal(err)
	}
	st := e.waitSim(t, "the long job running", func(st runnersim.State) bool {
		return st.Jobs["long-job"].State == runnersim.JobRunning
	})
	busyID := st.Jobs["long-job"].InstanceID
	wk := e.worker(t, settings(e, name, fastPolicy()))

	wk.tick(t, name, 1)
	time.Sleep(5 * time.Millisecond) // past the 1 ms stabilization window and minimum uptime
	wk.tick(t, name, 2)

	grp := e.describe(t, name)
	var inService []string
	for _, in := range grp.Instances {
		if in.LifecycleState == astypes.LifecycleStateInService {
			inService = append(inService, aws.ToString(in.InstanceId))
		}
		if aws.ToString(in.InstanceId) == busyID && !aws.ToBool(in.ProtectedFromScaleIn) {
			t.Errorf("busy instance %s is not protected from scale-in", busyID)
		}
	}
	if !slices.Equal(inService, []string{busyID}) {
		t.Errorf("in service after scale-in: %v, want only the busy %s; decision: %s", inService, busyID, wk.lastDecision())
	}
	if d := aws.ToInt32(grp.DesiredCapacity); d != 1 {
		t.Errorf("desired %d, want 1", d)
	}
	st = e.w.Sim.State()
	if st.Totals.Killed != 0 {
		t.Errorf("%d jobs killed by scale-in", st.Totals.Killed)
	}
	if js := st.Jobs["long-job"]; js.State != runnersim.JobRunning || js.InstanceID != busyID {
		t.Errorf("the busy instance's job was disturbed: %+v", js)
	}
}

// A hung runner → no scale-in that tick, reported unknown; a pinned fleet keeps its capacity;
// two workers deciding the same tick → one decision. (One world: no jobs are queued here, so the
// groups do not share work.)
func TestUnknownPinnedAndTwoWorkers(t *testing.T) {
	e := newEnv(t)

	t.Run("hung runner blocks scale-in and is reported unknown", func(t *testing.T) {
		name := "runnerfleet-hung"
		e.group(t, name, 3)
		runners := live(e.w.Sim.State(), name)
		if err := e.w.Sim.SetFault(runners[0].InstanceID, runnersim.FaultHang); err != nil {
			t.Fatal(err)
		}
		wk := e.worker(t, settings(e, name, fastPolicy()))
		wk.tick(t, name, 1)
		time.Sleep(5 * time.Millisecond)
		wk.tick(t, name, 2)
		grp := e.describe(t, name)
		if d := aws.ToInt32(grp.DesiredCapacity); d != 3 || len(grp.Instances) != 3 {
			t.Errorf("scaled in to %d (%d instances) with a hung runner; decision: %s", d, len(grp.Instances), wk.lastDecision())
		}
		if got := wk.gauge(t, "runnerfleet_fleet_unknown_instances", name); got != 1 {
			t.Errorf("/metrics unknown_instances = %v, want 1", got)
		}
		if d := wk.lastDecision(); !strings.Contains(d, runners[0].InstanceID) || !strings.Contains(d, "timeout") {
			t.Errorf("decision log does not name the hung runner and why: %s", d)
		}
	})

	t.Run("a runner that stays hung is replaced, the desired capacity kept", func(t *testing.T) {
		name := "runnerfleet-wedged"
		e.group(t, name, 2)
		runners := live(e.w.Sim.State(), name)
		wedged := runners[0].InstanceID
		if err := e.w.Sim.SetFault(wedged, runnersim.FaultHang); err != nil {
			t.Fatal(err)
		}
		p := fastPolicy()
		p.ReplaceUnknownAfter = time.Millisecond
		wk := e.worker(t, settings(e, name, p))
		wk.tick(t, name, 1) // its failing clock starts
		time.Sleep(5 * time.Millisecond)
		wk.tick(t, name, 2)
		if d := wk.lastDecision(); !strings.Contains(d, "replacing "+wedged) {
			t.Fatalf("decision does not replace the hung runner %s: %s", wedged, d)
		}
		if d := aws.ToInt32(e.describe(t, name).DesiredCapacity); d != 2 {
			t.Errorf("desired %d after replacing %s, want 2 (the group launches another)", d, wedged)
		}
		e.waitSim(t, "the hung runner's instance gone and another running", func(st runnersim.State) bool {
			l := live(st, name)
			return len(l) == 2 && !slices.ContainsFunc(l, func(in runnersim.InstanceState) bool { return in.InstanceID == wedged })
		})
	})

	t.Run("pinned fleet keeps its capacity", func(t *testing.T) {
		name := "runnerfleet-pinned"
		e.group(t, name, 2)
		wk := e.worker(t, settings(e, name, fastPolicy()))
		c := messages.NewCommand(name, messages.CommandScale, time.Now())
		four := 4
		c.Scale.Desired = &four
		if err := wk.h.Handle(context.Background(), &messages.Message{Kind: messages.KindCommand, ID: c.ID, Payload: &c}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			time.Sleep(5 * time.Millisecond)
			wk.tick(t, name, i)
		}
		grp := e.describe(t, name)
		if d := aws.ToInt32(grp.DesiredCapacity); d != 4 {
			t.Errorf("pinned fleet at desired %d, want 4; decision: %s", d, wk.lastDecision())
		}
		e.waitSim(t, "4 runners", func(st runnersim.State) bool { return len(live(st, name)) == 4 })
		if got := wk.gauge(t, "runnerfleet_fleet_in_service_instances", name); got != 4 {
			t.Errorf("/metrics in_service_instances = %v, want 4 (pinned ticks still report)", got)
		}
	})

	t.Run("two workers, one decision per tick", func(t *testing.T) {
		name := "runnerfleet-two"
		e.group(t, name, 2)
		a := e.worker(t, settings(e, name, fastPolicy()))
		b := e.worker(t, settings(e, name, fastPolicy()))
		for i := range 3 {
			var wg sync.WaitGroup
			for _, wk := range []worker{a, b} {
				wg.Go(func() { wk.tick(t, name, i) })
			}
			wg.Wait()
		}
		if n := a.decisions() + b.decisions(); n != 3 {
			t.Errorf("%d decisions for 3 ticks on two workers, want 3", n)
		}
	})
}
