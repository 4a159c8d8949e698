package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

// The fixed ports of `make emulator` and configs/local.yaml.
const (
	awsPort    = 4566
	simPort    = 9252
	workerPort = 9090
)

// The demo's workload and the bounds of its waits. The bounds are generous (moto starts slowly on
// a busy 2-core machine); a normal run takes about a minute and a half.
const (
	readyTimeout = 60 * time.Second
	phaseTimeout = 120 * time.Second
	// tickPeriod makes the fleet's rate(1 minute) tick rule fire this often.
	tickPeriod = 3 * time.Second
	// jobCount jobs of jobLength are fed at once: more than one runner takes (concurrent 4), so
	// they queue and the fleet grows; each job outlasts the hook's 5 s heartbeat timeout twice.
	jobCount  = 10
	jobLength = 15 * time.Second
	// launchHookTimeout is the fleet's launch hook timeout, AWS's minimum: the launch gate
	// completes the action as soon as the runner is healthy (a second or two here) and heartbeats
	// past it otherwise; a short hook would risk its ABANDON default on a loaded machine, which
	// ends an instance whose runner may already have taken jobs.
	launchHookTimeout = 30 * time.Second
	// spotNotice is the spot interruption's notice: longer than the rest of the demo, so the
	// notice is handled (counted) but the reclaim never comes.
	spotNotice = 5 * time.Minute
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

// parseDemoConfig parses the demo's worker config, which must name exactly one fleet.
func parseDemoConfig(text []byte, path string) (*config.Config, error) {
	cfg, err := config.Parse(text, config.Source{Getenv: func(string) string { return "" }})
	if err != nil {
		return nil, fmt.Errorf("the demo config %s: %w", path, err)
	}
	if len(cfg.Fleets) != 1 {
		return nil, fmt.Errorf("the demo config %s names %d fleets, want 1", path, len(cfg.Fleets))
	}
	return cfg, nil
}

// Run runs the whole demo and prints its summary to out.
func Run(ctx context.Context, o Options, out io.Writer) (*Summary, error) {
	say := func(format string, args ...any) { fmt.Fprintf(out, "demo: "+format+"\n", args...) }
	began := time.Now()
	// With FreePorts every part binds a port the kernel picks (port 0) and the demo reads back
	// what it got: a port found free first and bound later may be taken in between.
	aws_, sim_, wk := awsPort, simPort, workerPort
	if o.FreePorts {
		aws_, sim_, wk = 0, 0, 0
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
	// Validated before anything starts; parsed again below once the ports are known.
	if _, err := parseDemoConfig(raw, o.Config); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "runnerfleet-demo")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

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
	say("starting the AWS emulator (runner simulator on %s)", sim.URL())
	emu, err := emulator.Launch(emulator.Options{Port: aws_, RunnerSim: sim.URL(), TickPeriod: tickPeriod})
	if err != nil {
		return nil, fmt.Errorf("starting the AWS emulator: %w", err)
	}
	defer emu.Stop()
	say("AWS emulator on %s (pid %d)", emu.Endpoint, emu.PID())
	if err := sim.SetEmulatorURL(emu.Endpoint); err != nil {
		return nil, err
	}
	text := strings.NewReplacer(
		fmt.Sprintf("http://127.0.0.1:%d", awsPort), emu.Endpoint,
		fmt.Sprintf("http://127.0.0.1:%d", simPort), sim.URL(),
	).Replace(string(raw))
	cfg, err := parseDemoConfig([]byte(text), o.Config)
	if err != nil {
		return nil, err
	}
	fl := cfg.Fleets[0]
	cfgPath := filepath.Join(tmp, "worker.yaml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
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

	// 2. What the worker stack would make: queues, the instance-events rule, the state table.
	urls, err := c.createQueues(ctx, cfg.Queues)
	if err != nil {
		return nil, err
	}
	if err := c.createLifecycleRule(ctx, cfg.Queues); err != nil {
		return nil, err
	}
	if err := state.CreateTable(ctx, dynamodb.NewFromConfig(awsCfg), cfg.StateTable); err != nil {
		return nil, fmt.Errorf("creating the state table: %w", err)
	}
	say("created queues %s, %s (+ DLQs), the instance-events rule and state table %s", cfg.Queues.Lifecycle.Name, cfg.Queues.Control.Name, cfg.StateTable)

	// 3. The fleet, from the runner template.
	if _, err := c.provisionFleet(ctx, fl, cfg.Queues); err != nil {
		return nil, err
	}
	// 4. The worker.
	var listen []string
	if o.FreePorts {
		listen = []string{"--listen", fmt.Sprintf("127.0.0.1:%d", wk)}
	}
	w, err := startWorker(ctx, filepath.Join(o.Bin, "worker"), cfgPath, filepath.Join(tmp, "worker.log"), listen...)
	if err != nil {
		return nil, err
	}
	defer w.kill()
	addr, err := w.listenAddr(ctx, readyTimeout)
	if err != nil {
		return nil, fmt.Errorf("the worker did not start serving (%v); its log:\n%s", err, w.tail())
	}
	metricsURL := "http://" + addr
	if err := waitFor(ctx, readyTimeout, func() bool { return httpStatus(metricsURL+"/readyz") == 200 }); err != nil {
		return nil, fmt.Errorf("the worker did not become ready (%v); its log:\n%s", err, w.tail())
	}
	say("worker ready on %s (pid %d): it checked the fleet's terminate hook at start-up", metricsURL, w.cmd.Process.Pid)

	var ids []string
	if err := waitFor(ctx, readyTimeout, func() bool { ids = c.inService(ctx, fl.GroupName); return len(ids) >= 1 }); err != nil {
		return nil, fmt.Errorf("the fleet's first instance did not come in service: %w; the worker's log:\n%s", err, w.tail())
	}
	sum := &Summary{Stack: fl.StackName}
	sum.DesiredStart = c.desired(ctx, fl.GroupName)
	sum.DesiredPeak = sum.DesiredStart
	say("fleet stack %s from deploy/runner/runner.yaml: group %s (terminate hook %s, launch hook %s, tick rule %s); instance %s passed the launch gate, in service",
		fl.StackName, fl.GroupName, fl.Drain.HookTimeout, launchHookTimeout, fl.TickRule, strings.Join(ids, ", "))

	pub := exec.CommandContext(ctx, filepath.Join(o.Bin, "publisher"), "tick", "--fleet", fl.Name, "--config", cfgPath)
	idOut, err := pub.Output()
	if err != nil {
		return nil, fmt.Errorf("publisher tick: %w", errorWithStderr(err))
	}
	sum.CommandID = strings.TrimSpace(string(idOut))
	say("publisher tick --fleet %s: command %s", fl.Name, sum.CommandID)

	fail := func(what string, err error) error {
		_ = sum.readLog(ctx, emu)
		out := emu.Output()
		if len(out) > 3000 {
			out = out[len(out)-3000:]
		}
		return fmt.Errorf("%s (%v); decisions %v, drains %v, emitted %v; the worker's log:\n%s\nthe emulator's output:\n%s",
			what, err, sum.Decisions, sum.Drains, sum.Emitted, w.tail(), out)
	}
	watch := func(what string, cond func() bool) error {
		err := waitFor(ctx, phaseTimeout, func() bool {
			if !sum.readMetrics(metricsURL) {
				return false
			}
			sum.DesiredPeak = max(sum.DesiredPeak, c.desired(ctx, fl.GroupName))
			return cond()
		})
		if err != nil {
			return fail(what, err)
		}
		return nil
	}

	// 5. Jobs pile up: the ticks scale the fleet out.
	jobs := make([]runnersim.Job, jobCount)
	for i := range jobs {
		jobs[i] = runnersim.Job{ID: fmt.Sprintf("demo-job-%02d", i+1), DurationMS: jobLength.Milliseconds()}
	}
	if _, err := sim.AddJobs(jobs); err != nil {
		return nil, err
	}
	say("fed %d jobs of %s into the runner simulator; one runner takes %d at a time", jobCount, jobLength, runnersim.DefaultConcurrent)
	// A new instance's runner may take jobs while the launch gate still holds it in Pending:Wait;
	// the demo retires one that is InService (a termination during Pending:Wait is another path).
	busyServing := func() []busyRunner {
		return onlyIn(busyInstances(sim.State(), fl.GroupName, ""), c.inService(ctx, fl.GroupName))
	}
	if err := watch("no scale-out with runners busy on new instances", func() bool {
		return sum.Decisions["scale_out"] >= 1 && len(busyServing()) > 0
	}); err != nil {
		return nil, err
	}
	say("scaled out: desired capacity %d; new runners picked up queued jobs", sum.DesiredPeak)

	// 6. A busy instance terminated through its group: the drain waits for its jobs.
	busy := busyServing()
	sum.Busy, sum.BusyJobs = busy[0].id, busy[0].running
	if _, err := c.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(sum.Busy), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		return nil, fmt.Errorf("terminating %s: %w", sum.Busy, err)
	}
	say("terminated busy instance %s (%d running jobs) through its group: its drain waits for them", sum.Busy, sum.BusyJobs)
	if err := watch("the busy instance's drain did not finish", func() bool {
		_, inGroup := c.member(ctx, fl.GroupName, sum.Busy)
		return sum.Drains["completed"] >= 1 && !inGroup
	}); err != nil {
		return nil, err
	}
	_ = sum.readLog(ctx, emu)
	say("drained %s: it waited %s in Terminating:Wait, then was unregistered and completed", sum.Busy, sum.BusyWaited.Round(100*time.Millisecond))

	// 7. The load gone: every job done, idle instances removed (each one drained too).
	// Back at the minimum: by scale-in (each removal drained) from a peak of 3; from a peak of 2
	// (a slow machine: the ticks saw the queue drain before a third instance was due) the busy
	// instance's retirement alone took the fleet there.
	if err := watch("no scale-in after the jobs ended", func() bool {
		st := sim.State()
		done := st.Totals.Finished+st.Totals.Killed >= jobCount
		atMin := c.desired(ctx, fl.GroupName) == 1 && len(c.inService(ctx, fl.GroupName)) == 1
		if sum.DesiredPeak <= 2 {
			return done && atMin && sum.Drains["completed"] >= 1
		}
		return done && atMin && sum.Decisions["scale_in"] >= 1 && sum.Drains["completed"] >= 2
	}); err != nil {
		return nil, err
	}
	if sum.Decisions["scale_in"] >= 1 {
		say("all %d jobs done; idle instances scaled in (desired %d)", jobCount, c.desired(ctx, fl.GroupName))
	} else {
		say("all %d jobs done; the busy instance's retirement took the fleet back to desired %d (nothing idle to scale in)", jobCount, c.desired(ctx, fl.GroupName))
	}

	// 8. The other kinds: notices for an instance, a malformed body and an unknown event.
	if left := c.inService(ctx, fl.GroupName); len(left) > 0 {
		if err := emu.Rebalance(ctx, left[0]); err != nil {
			return nil, err
		}
		if err := emu.SpotInterruption(ctx, left[0], spotNotice); err != nil {
			return nil, err
		}
		say("rebalance recommendation and spot interruption notice (%s) for %s", spotNotice, left[0])
	}
	for _, body := range []string{`{"detail-type": 5, "source": "aws.ec2"}`, unknownEvent()} {
		if _, err := c.sqs.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(urls[cfg.Queues.Lifecycle.Name]), MessageBody: aws.String(body)}); err != nil {
			return nil, err
		}
	}
	say("sent a malformed body and an event of a kind nobody handles straight to %s", cfg.Queues.Lifecycle.Name)
	var missing []string
	if err := watch("the worker did not see everything", func() bool { missing = sum.missing(); return len(missing) == 0 }); err != nil {
		return nil, fmt.Errorf("missing %s: %w", strings.Join(missing, ", "), err)
	}

	// 9. The world's side, then stop the worker.
	if err := sum.readLog(ctx, emu); err != nil {
		return nil, err
	}
	sum.Jobs = sim.State().Totals
	if sum.DeadLetterDepth, err = c.dlqDepth(ctx, urls, cfg.Queues); err != nil {
		return nil, err
	}
	g, _ := c.group(ctx, fl.GroupName)
	sum.DesiredEnd = int(aws.ToInt32(g.DesiredCapacity))
	for _, i := range g.Instances {
		sum.Instances = append(sum.Instances, aws.ToString(i.InstanceId)+": "+string(i.LifecycleState))
	}
	sort.Strings(sum.Instances)
	if err := sum.killedError(); err != nil {
		sum.print(out)
		return nil, fail("jobs were killed", err)
	}
	stopped := time.Now()
	if err := w.stop(cfg.StopTimeout + 2*time.Second); err != nil {
		return nil, fmt.Errorf("stopping the worker: %w; its log:\n%s", err, w.tail())
	}
	say("worker stopped on SIGTERM in %s (stop timeout %s); the demo took %s", time.Since(stopped).Round(time.Millisecond), cfg.StopTimeout, time.Since(began).Round(time.Second))
	sum.print(out)
	return sum, nil
}

// busyRunner is an instance of the group running jobs.
type busyRunner struct {
	id      string
	running int
	latest  time.Time // when its newest job started
}

// busyInstances lists the group's instances running jobs, except skip, newest work first (the
// instance whose jobs end last shows the drain's wait best).
func busyInstances(st runnersim.State, group, skip string) []busyRunner {
	byID := map[string]*busyRunner{}
	for _, in := range st.Instances {
		if in.Group == group && in.InstanceID != skip && len(in.Running) > 0 && in.Process == "running" {
			byID[in.InstanceID] = &busyRunner{id: in.InstanceID, running: len(in.Running)}
		}
	}
	for _, j := range st.Jobs {
		if b, ok := byID[j.InstanceID]; ok && j.State == runnersim.JobRunning && j.StartedAt.After(b.latest) {
			b.latest = j.StartedAt
		}
	}
	out := make([]busyRunner, 0, len(byID))
	for _, b := range byID {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].latest.After(out[j].latest) })
	return out
}

// onlyIn keeps the runners whose instance is in ids.
func onlyIn(runners []busyRunner, ids []string) []busyRunner {
	keep := map[string]bool{}
	for _, id := range ids {
		keep[id] = true
	}
	var out []busyRunner
	for _, r := range runners {
		if keep[r.id] {
			out = append(out, r)
		}
	}
	return out
}

func (c clients) desired(ctx context.Context, group string) int {
	g, _ := c.group(ctx, group)
	return int(aws.ToInt32(g.DesiredCapacity))
}

// member returns the instance's lifecycle state in the group; false when the group no longer has it.
func (c clients) member(ctx context.Context, group, id string) (string, bool) {
	g, ok := c.group(ctx, group)
	if !ok {
		return "", true // unknown: keep waiting
	}
	for _, i := range g.Instances {
		if aws.ToString(i.InstanceId) == id {
			return string(i.LifecycleState), true
		}
	}
	return "", false
}
