package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// The package shares one emulator (started on first use, stopped by TestMain) so that parallel
// tests do not each pay moto's start-up on 2 cores; every test names its resources uniquely.
// Its tick period makes rate(...) rules fire every testTick.
const testTick = 2 * time.Second

// waitLimit bounds how long a test waits for the emulator to reach a state; reaching it is
// asserted, the time it takes is not.
const waitLimit = 45 * time.Second

var (
	sharedOnce sync.Once
	shared     *emulator.Emulator
	sharedErr  error
	sim        *fakeSim
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		_ = shared.Stop()
	}
	if sim != nil {
		sim.srv.Close()
	}
	os.Exit(code)
}

// world returns the package's shared emulator (with a fake runner simulator behind it).
func world(t *testing.T) *emulator.Emulator {
	t.Helper()
	sharedOnce.Do(func() {
		sim = newFakeSim()
		shared, sharedErr = emulator.Launch(emulator.Options{RunnerSim: sim.srv.URL, TickPeriod: testTick})
	})
	if sharedErr != nil {
		t.Fatalf("starting the AWS emulator: %v", sharedErr)
	}
	emulator.SetTestEnv()
	return shared
}

// fakeSim records the emulator's calls to the runner simulator and answers DELETE with a killed
// count set per instance.
type fakeSim struct {
	srv      *httptest.Server
	mu       sync.Mutex
	launched map[string]map[string]any
	deleted  map[string]int
	killed   map[string]int
}

func newFakeSim() *fakeSim {
	f := &fakeSim{launched: map[string]map[string]any{}, deleted: map[string]int{}, killed: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

func (f *fakeSim) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/instances":
		var body map[string]any
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, _ := body["instance_id"].(string)
		f.launched[id] = body
		w.Write([]byte(`{}`))
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/instances/"):
		id := strings.TrimPrefix(r.URL.Path, "/instances/")
		f.deleted[id]++
		fmt.Fprintf(w, `{"killed":%d}`, f.killed[id])
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeSim) setKilled(id string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.killed[id] = n
}

func (f *fakeSim) launch(id string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.launched[id]
	return b, ok
}

func (f *fakeSim) deletes(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deleted[id]
}

type clients struct {
	asg *autoscaling.Client
	ec2 *ec2.Client
	sqs *sqs.Client
	eb  *eventbridge.Client
}

func newClients(t *testing.T, e *emulator.Emulator) clients {
	cfg := e.AWSConfig(t)
	return clients{asg: autoscaling.NewFromConfig(cfg), ec2: ec2.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg),
		eb: eventbridge.NewFromConfig(cfg)}
}

// groupSpec describes a test group.
type groupSpec struct {
	desired    int32
	min        int32
	hooks      []astypes.LifecycleHookSpecification
	protectNew bool
}

// newGroup creates a launch template and a group from it; returns the group and template names.
func newGroup(t *testing.T, c clients, spec groupSpec) (string, string) {
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
		AutoScalingGroupName:             aws.String(name),
		LaunchTemplate:                   &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		MinSize:                          aws.Int32(spec.min),
		MaxSize:                          aws.Int32(10),
		DesiredCapacity:                  aws.Int32(spec.desired),
		AvailabilityZones:                []string{"us-east-1a"},
		LifecycleHookSpecificationList:   spec.hooks,
		NewInstancesProtectedFromScaleIn: aws.Bool(spec.protectNew),
	}); err != nil {
		t.Fatalf("CreateAutoScalingGroup: %v", err)
	}
	return name, lt
}

func terminateHook(name string, timeout int32, result, metadata string) astypes.LifecycleHookSpecification {
	h := astypes.LifecycleHookSpecification{
		LifecycleHookName:   aws.String(name),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"),
		HeartbeatTimeout:    aws.Int32(timeout),
		DefaultResult:       aws.String(result),
	}
	if metadata != "" {
		h.NotificationMetadata = aws.String(metadata)
	}
	return h
}

// groupInstances returns the group's instances by id.
func groupInstances(t *testing.T, c clients, group string) map[string]astypes.Instance {
	t.Helper()
	out, err := c.asg.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{group},
	})
	if err != nil {
		t.Fatalf("DescribeAutoScalingGroups: %v", err)
	}
	if len(out.AutoScalingGroups) != 1 {
		t.Fatalf("DescribeAutoScalingGroups(%s): %d groups", group, len(out.AutoScalingGroups))
	}
	m := map[string]astypes.Instance{}
	for _, in := range out.AutoScalingGroups[0].Instances {
		m[aws.ToString(in.InstanceId)] = in
	}
	return m
}

func anyInstance(t *testing.T, m map[string]astypes.Instance) string {
	t.Helper()
	for id := range m {
		return id
	}
	t.Fatal("the group has no instances")
	return ""
}

func ec2State(t *testing.T, c clients, id string) ec2types.InstanceStateName {
	t.Helper()
	out, err := c.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatalf("DescribeInstances(%s): %v", id, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			return in.State.Name
		}
	}
	t.Fatalf("DescribeInstances(%s): not found", id)
	return ""
}

// eventQueue creates a queue and a default-bus rule with pattern delivering to it; returns the queue URL.
func eventQueue(t *testing.T, c clients, pattern string) string {
	t.Helper()
	return ruleQueue(t, c, &eventbridge.PutRuleInput{EventPattern: aws.String(pattern)})
}

func ruleQueue(t *testing.T, c clients, rule *eventbridge.PutRuleInput) string {
	t.Helper()
	ctx := context.Background()
	qname := emulator.UniqueName(t, "runnerfleet-q")
	q, err := c.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(qname)})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	rule.Name = aws.String(emulator.UniqueName(t, "runnerfleet-rule"))
	if _, err := c.eb.PutRule(ctx, rule); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	if _, err := c.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule:    rule.Name,
		Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String("arn:aws:sqs:us-east-1:123456789012:" + qname)}},
	}); err != nil {
		t.Fatalf("PutTargets: %v", err)
	}
	return aws.ToString(q.QueueUrl)
}

// event is an EventBridge event as delivered to SQS.
type event struct {
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Region     string          `json:"region"`
	Time       string          `json:"time"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// inbox keeps events read from a queue but not yet matched, so a batch holding several events
// serves several receiveEvent calls.
var inbox = struct {
	sync.Mutex
	byURL map[string][]event
}{byURL: map[string][]event{}}

// takeBuffered removes and returns the first buffered event of url that match accepts.
func takeBuffered(url string, match func(event) bool) (event, bool) {
	inbox.Lock()
	defer inbox.Unlock()
	evs := inbox.byURL[url]
	for i, ev := range evs {
		if match(ev) {
			inbox.byURL[url] = append(evs[:i:i], evs[i+1:]...)
			return ev, true
		}
	}
	return event{}, false
}

// receiveEvent returns the first event on url that match accepts, long-polling until one arrives
// (what it reads is deleted from the queue; events not matched stay buffered for later calls).
func receiveEvent(t *testing.T, c clients, url string, match func(event) bool) event {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if ev, ok := takeBuffered(url, match); ok {
			return ev
		}
		out, err := c.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), WaitTimeSeconds: 2, MaxNumberOfMessages: 10,
		})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		for _, m := range out.Messages {
			var ev event
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				t.Fatalf("event body is not JSON: %v: %s", err, aws.ToString(m.Body))
			}
			_, _ = c.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			inbox.Lock()
			inbox.byURL[url] = append(inbox.byURL[url], ev)
			inbox.Unlock()
		}
	}
	inbox.Lock()
	var seen []string
	for _, ev := range inbox.byURL[url] {
		seen = append(seen, ev.DetailType+" "+string(ev.Detail))
	}
	inbox.Unlock()
	t.Fatalf("no matching event within %s; unmatched: %q", waitLimit, seen)
	return event{}
}

// eventually polls cond until it holds, failing with what describe says after waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s did not happen within %s", what, waitLimit)
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// logOf returns the log events of kind concerning instance (field instance_id).
func logOf(t *testing.T, e *emulator.Emulator, kind, instance string) []emulator.LogEvent {
	t.Helper()
	evs, err := e.Log(context.Background(), 0)
	if err != nil {
		t.Fatalf("reading the transition log: %v", err)
	}
	var out []emulator.LogEvent
	for _, ev := range evs {
		if ev.Kind == kind && (instance == "" || ev.String("instance_id") == instance) {
			out = append(out, ev)
		}
	}
	return out
}
