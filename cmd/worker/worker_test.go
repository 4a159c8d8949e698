package main

// Integration tests of issue 3: the worker binary, built here and run as a subprocess against the
// AWS emulator (real SDK, real SQS semantics).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/runnerfleet/runnerfleet/cmd/worker/startlog"
	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/messages"
)

var workerBin, publisherBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runnerfleet-worker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	publisherBin = filepath.Join(dir, "publisher")
	for bin, pkg := range map[string]string{workerBin: ".", publisherBin: "../publisher"} {
		build := exec.Command("go", "build", "-race", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// queues is one test's set of queues in the emulator.
type queues struct {
	client                                       *awssqs.Client
	lifecycle, lifecycleDLQ, control, controlDLQ string // URLs
	names                                        map[string]string
}

func makeQueues(t *testing.T, e *emulator.Emulator) *queues {
	t.Helper()
	ctx := context.Background()
	q := &queues{client: awssqs.NewFromConfig(e.AWSConfig(t)), names: map[string]string{}}
	base := emulator.UniqueName(t, "runnerfleet")
	create := func(name string, fifo bool, dlqURL string) string {
		attrs := map[string]string{"VisibilityTimeout": "30"}
		if fifo {
			attrs["FifoQueue"] = "true"
			attrs["ContentBasedDeduplication"] = "true"
		}
		if dlqURL != "" {
			arn, err := q.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(dlqURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
			if err != nil {
				t.Fatal(err)
			}
			attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, arn.Attributes["QueueArn"])
		}
		out, err := q.client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
		if err != nil {
			t.Fatalf("creating queue %s: %v", name, err)
		}
		return aws.ToString(out.QueueUrl)
	}
	q.lifecycleDLQ = create(base+"-ldlq", false, "")
	q.lifecycle = create(base+"-life", false, q.lifecycleDLQ)
	q.controlDLQ = create(base+"-cdlq.fifo", true, "")
	q.control = create(base+"-ctl.fifo", true, q.controlDLQ)
	return q
}

func (q *queues) send(t *testing.T, url, body, group string) {
	t.Helper()
	in := &awssqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}
	if group != "" {
		in.MessageGroupId = aws.String(group)
	}
	if _, err := q.client.SendMessage(context.Background(), in); err != nil {
		t.Fatalf("sending to %s: %v", url, err)
	}
}

// receive returns what url holds now (up to 10 messages, visible again after 30 s).
func (q *queues) receive(t *testing.T, url string, wait time.Duration) []types.Message {
	t.Helper()
	out, err := q.client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(wait / time.Second),
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		t.Fatalf("receiving from %s: %v", url, err)
	}
	return out.Messages
}

// testFleet is the fleet "blue" of one test: its Auto Scaling group (a terminate hook, no
// instances unless asked) and the state table.
type testFleet struct {
	group, table string
	// metricsURL is the fleet's metrics URL template (loopback).
	metricsURL string
	// extra is appended to the fleet's YAML entry (indented keys such as drain settings).
	extra string
}

// makeFleet creates the group, with a terminate hook of hookTimeout seconds, and the state table.
func makeFleet(t *testing.T, e *emulator.Emulator, instances int, hookTimeout int32) *testFleet {
	t.Helper()
	ctx := context.Background()
	cfg := e.AWSConfig(t)
	f := &testFleet{group: emulator.UniqueName(t, "runnerfleet-asg"), table: emulator.UniqueName(t, "runnerfleet-state"),
		metricsURL: "http://127.0.0.1:1/instances/{{.InstanceID}}/metrics"}
	if err := state.CreateTable(ctx, dynamodb.NewFromConfig(cfg), f.table); err != nil {
		t.Fatal(err)
	}
	createGroup(t, e, f.group, instances, hookTimeout)
	return f
}

// createGroup creates an Auto Scaling group of instances (at most max(instances, 1)) with the
// fleet's terminate hook of hookTimeout seconds, from a launch template of its own.
func createGroup(t *testing.T, e *emulator.Emulator, name string, instances int, hookTimeout int32) {
	t.Helper()
	ctx := context.Background()
	cfg := e.AWSConfig(t)
	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := ec2.NewFromConfig(cfg).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatalf("CreateLaunchTemplate: %v", err)
	}
	if _, err := autoscaling.NewFromConfig(cfg).CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(int32(max(instances, 1))), DesiredCapacity: aws.Int32(int32(instances)),
		AvailabilityZones: []string{emulator.Region + "a"},
		LifecycleHookSpecificationList: []astypes.LifecycleHookSpecification{{
			LifecycleHookName: aws.String(fleet.DefaultTerminateHook), LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"),
			HeartbeatTimeout: aws.Int32(hookTimeout), DefaultResult: aws.String("CONTINUE"),
		}},
	}); err != nil {
		t.Fatalf("CreateAutoScalingGroup: %v", err)
	}
}

func desiredCapacity(t *testing.T, e *emulator.Emulator, group string) int {
	t.Helper()
	out, err := autoscaling.NewFromConfig(e.AWSConfig(t)).DescribeAutoScalingGroups(context.Background(),
		&autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Fatalf("describing group %s: %v", group, err)
	}
	return int(aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity))
}

type workerProc struct {
	cmd    *exec.Cmd
	out    *lockedBuf
	listen string
	config string
	done   chan error
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
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func writeConfig(t *testing.T, e *emulator.Emulator, q *queues, f *testFleet, listen, stopTimeout string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
region: us-east-1
endpoint: %s
loopback_only: true
listen: %s
log_level: debug
stop_timeout: %s
state_table: %s
sweep_interval: 1s
handler: {timeout: 30s, retry: {max_retries: 1, initial_interval: 100ms, max_interval: 200ms}}
queues:
  lifecycle: {name: %s, dead_letter: %s, visibility_timeout: 10s}
  control: {name: %s, dead_letter: %s, visibility_timeout: 10s}
fleets:
  - name: blue
    group: %s
    tick_rule: blue-tick
    metrics_url: %q
    policy: {min: 1, max: 1}
%s`, e.Endpoint, listen, stopTimeout, f.table, q.lifecycle, q.lifecycleDLQ, q.control, q.controlDLQ, f.group, f.metricsURL, f.extra)
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startWorker(t *testing.T, configPath string, extra ...string) *workerProc {
	t.Helper()
	return startWorkerEnv(t, nil, append([]string{"--config", configPath}, extra...)...)
}

// startWorkerEnv runs the worker with env added to this process's environment and args.
func startWorkerEnv(t *testing.T, env []string, args ...string) *workerProc {
	t.Helper()
	// Port 0: the worker binds a free port and logs it ("worker running", listen). A port picked
	// here and handed over could be taken before the worker binds it, or by another test's worker,
	// whose /readyz would then answer for this one.
	w := &workerProc{out: &lockedBuf{}, done: make(chan error, 1)}
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			w.config = args[i+1]
		}
	}
	w.cmd = exec.Command(workerBin, append(args, "--listen", "127.0.0.1:0")...)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	w.cmd.Env = append(os.Environ(), env...)
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			_ = w.cmd.Process.Kill()
			<-w.done
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", w.out.String())
		}
	})
	w.waitFor(t, "the worker running (its listen address logged)", func() bool {
		var ok bool
		w.listen, ok = startlog.ListenAddr([]byte(w.out.String()))
		return ok
	})
	w.waitFor(t, "readyz 200", func() bool { code, _ := w.get("/readyz"); return code == 200 })
	return w
}

func (w *workerProc) get(path string) (int, string) {
	resp, err := netguard.HTTPClient(5 * time.Second).Get("http://" + w.listen + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one sample line of /metrics ("" name{labels} value); 0 if absent.
func (w *workerProc) metric(series string) float64 {
	_, body := w.get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// waitFor polls cond until it holds; it fails the test after a generous bound (the final state is
// what is asserted, not how fast it came).
func (w *workerProc) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("worker exited (%v) while waiting for %s", err, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func tickCommand(t *testing.T, fleet string) (string, string) {
	t.Helper()
	c := messages.NewCommand(fleet, messages.CommandTick, time.Now())
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b), c.ID
}

func scheduledEvent(rule string) string {
	return fmt.Sprintf(`{"version":"0","id":"%d","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"%s","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/%s"],"detail":{}}`,
		time.Now().UnixNano(), time.Now().UTC().Format(time.RFC3339), rule)
}

// Issue 3, "Checked by": a valid event, a malformed body, an unknown detail-type and an oversize
// command sent together.
func TestMixedBatch(t *testing.T) {
	t.Parallel()
	e := emulator.Start(t, emulator.Options{})
	q := makeQueues(t, e)
	f := makeFleet(t, e, 0, 5)
	w := startWorker(t, writeConfig(t, e, q, f, "127.0.0.1:0", "10s"))

	malformed := `{"kind":"command","schema":1,` // cut short
	oversizeCmd := messages.NewCommand("blue", messages.CommandTick, time.Now())
	oversize, _ := json.Marshal(map[string]any{"kind": "command", "schema": 1, "id": oversizeCmd.ID, "issued_at": oversizeCmd.IssuedAt,
		"fleet": "blue", "type": "tick", "issuer": strings.Repeat("x", 70*1024)})
	unknown := `{"version":"0","id":"u-1","detail-type":"AWS API Call via CloudTrail","source":"aws.autoscaling","account":"123456789012","time":"2026-11-27T10:00:00Z","region":"us-east-1","resources":[],"detail":{}}`

	q.send(t, q.control, scheduledEvent("blue-tick"), "blue")
	q.send(t, q.control, malformed, "blue")
	q.send(t, q.control, string(oversize), "blue")
	q.send(t, q.lifecycle, unknown, "")

	w.waitFor(t, "the valid tick, two dead letters and one unknown", func() bool {
		return w.metric(`runnerfleet_ticks_total{fleet="blue",source="schedule"}`) == 1 &&
			w.metric(`runnerfleet_messages_dead_lettered_total{cause="invalid",kind="invalid",queue="control"}`) == 2 &&
			w.metric(`runnerfleet_messages_unknown_total{queue="lifecycle"}`) == 1
	})

	// The tick reached the scaling handler: the empty group was grown to the policy's minimum.
	w.waitFor(t, "the tick's scale-out decision", func() bool {
		return w.metric(`runnerfleet_scale_decisions_total{action="scale_out",fleet="blue"}`) == 1
	})
	if d := desiredCapacity(t, e, f.group); d != 1 {
		t.Errorf("group desired capacity %d after the tick, want 1 (policy min)", d)
	}

	dead := q.receive(t, q.controlDLQ, 2*time.Second)
	for len(dead) < 2 {
		more := q.receive(t, q.controlDLQ, 2*time.Second)
		if len(more) == 0 {
			break
		}
		dead = append(dead, more...)
	}
	if len(dead) != 2 {
		t.Fatalf("control DLQ holds %d messages, want 2", len(dead))
	}
	seen := map[string]string{}
	for _, m := range dead {
		reason := aws.ToString(m.MessageAttributes[sqs.MetaReason].StringValue)
		if reason == "" {
			t.Errorf("dead letter without %s attribute: %.80s", sqs.MetaReason, aws.ToString(m.Body))
		}
		seen[aws.ToString(m.Body)] = reason
	}
	if r, ok := seen[malformed]; !ok || r == "" {
		t.Errorf("malformed body not in the DLQ with a reason: %v", ok)
	}
	if r, ok := seen[string(oversize)]; !ok || !strings.Contains(r, "65536") {
		t.Errorf("oversize command not in the DLQ with its size reason: %q", r)
	}
	if left := q.receive(t, q.lifecycle, 0); len(left) != 0 {
		t.Errorf("the unknown event is still in the lifecycle queue")
	}
	if code, body := w.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s after the batch", code, body)
	}

	// The next valid message is handled: a tick sent by the publisher, end to end.
	pub := exec.Command(publisherBin, "tick", "--fleet", "blue", "--config", w.config)
	out, err := pub.Output()
	if err != nil {
		t.Fatalf("publisher tick: %v", err)
	}
	id := strings.TrimSpace(string(out))
	if len(id) < 8 {
		t.Fatalf("publisher printed %q, want the command id", out)
	}
	w.waitFor(t, "the published tick", func() bool {
		return w.metric(`runnerfleet_ticks_total{fleet="blue",source="command"}`) == 1
	})

	if !strings.Contains(w.out.String(), `"event_id":"`+id+`"`) {
		t.Errorf("no log line names the published command %s", id)
	}

	// Every log line of a message's handling names it.
	for _, line := range strings.Split(w.out.String(), "\n") {
		if !strings.Contains(line, `"msg":"tick"`) {
			continue
		}
		for _, k := range []string{`"message_id":`, `"event_id":`, `"kind":`, `"fleet":"blue"`, `"queue":"control"`} {
			if !strings.Contains(line, k) {
				t.Errorf("tick log line lacks %s: %s", k, line)
			}
		}
	}
}

// Issue 3, "Checked by": SIGTERM during a slow step → its message is not lost, and the worker
// exits within the stop timeout.
func TestSIGTERMDuringSlowStep(t *testing.T) {
	t.Parallel()
	e := emulator.Start(t, emulator.Options{})
	f := makeFleet(t, e, 0, 5)
	for _, tc := range []struct {
		name     string
		delay    string
		finishes bool
	}{
		{"step outlives the stop timeout: released", "2m", false},
		{"step finishes within the stop timeout: acked", "1s", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := makeQueues(t, e)
			const stopTimeout = 5 * time.Second
			w := startWorker(t, writeConfig(t, e, q, f, "127.0.0.1:0", stopTimeout.String()), "--debug-tick-delay", tc.delay)
			body, id := tickCommand(t, "blue")
			q.send(t, q.control, body, "blue")
			w.waitFor(t, "the tick in flight", func() bool {
				return w.metric(`runnerfleet_messages_received_total{kind="command",queue="control"}`) == 1
			})
			signalled := time.Now()
			if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-w.done:
				if err != nil {
					t.Errorf("worker exit: %v", err)
				}
			case <-time.After(stopTimeout + 5*time.Second):
				t.Fatal("worker still running well past its stop timeout")
			}
			if took := time.Since(signalled); took > stopTimeout {
				t.Errorf("worker took %s to stop, more than its stop timeout %s", took, stopTimeout)
			}
			handled := strings.Contains(w.out.String(), `"msg":"message handled"`)
			// A released message is visible at once, unless the worker's own long poll, cut short
			// by the shutdown, took it on its way out: then SQS redelivers it after the queue's
			// visibility timeout (10 s here). Either way it comes back.
			back := q.receive(t, q.control, 2*time.Second)
			for end := time.Now().Add(15 * time.Second); !handled && len(back) == 0 && time.Now().Before(end); {
				back = q.receive(t, q.control, 5*time.Second)
			}
			requeued := len(back) == 1 && strings.Contains(aws.ToString(back[0].Body), id)
			if handled == requeued {
				t.Fatalf("handled=%v, back in the queue=%v: want exactly one (handled once, or delivered again)", handled, requeued)
			}
			if handled != tc.finishes {
				t.Errorf("handled = %v, want %v", handled, tc.finishes)
			}
		})
	}
}

// Issue 3, "Checked by": a config file with three mistakes → all three reported, no start.
func TestConfigWithThreeMistakes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bad.yaml")
	bad := `
stop_timeout: 10m
fleets:
  - name: blue
    grop: blue-asg
    drain: {hook_timeout: 15m, heartbeat_interval: 10m}
`
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(workerBin, "--config", path, "--listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the worker started with a bad config:\n%s", out)
	}
	for _, want := range []string{"grop", "stop_timeout 10m0s", "heartbeat_interval 10m0s exceeds a third"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not report %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "worker running") {
		t.Error("the worker reports running")
	}
}

// The ECS task's way: the config in an SSM parameter named by RUNNERFLEET_CONFIG_PARAMETER, the
// endpoint and loopback guard from RUNNERFLEET_<KEY> variables.
func TestConfigFromSSMParameter(t *testing.T) {
	t.Parallel()
	e := emulator.Start(t, emulator.Options{})
	q := makeQueues(t, e)
	yaml, err := os.ReadFile(writeConfig(t, e, q, makeFleet(t, e, 0, 5), "127.0.0.1:0", "10s"))
	if err != nil {
		t.Fatal(err)
	}
	name := "/runnerfleet/" + emulator.UniqueName(t, "worker-config")
	if _, err := ssm.NewFromConfig(e.AWSConfig(t)).PutParameter(context.Background(), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(string(yaml)), Type: ssmtypes.ParameterTypeString,
	}); err != nil {
		t.Fatal(err)
	}
	w := startWorkerEnv(t, []string{
		"RUNNERFLEET_CONFIG=", "RUNNERFLEET_CONFIG_PARAMETER=" + name,
		"RUNNERFLEET_ENDPOINT=" + e.Endpoint, "RUNNERFLEET_LOOPBACK_ONLY=true",
	})
	body, _ := tickCommand(t, "blue")
	q.send(t, q.control, body, "blue")
	w.waitFor(t, "the tick", func() bool {
		return w.metric(`runnerfleet_ticks_total{fleet="blue",source="command"}`) == 1
	})
}
