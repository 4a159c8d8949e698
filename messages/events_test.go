package messages_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("reading testdata: %v", err)
	}
	return b
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// TestParseEventSamples parses AWS's documented example of every registered kind (testdata/) into
// the typed value it must give.
func TestParseEventSamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file        string
		kind        messages.Kind
		id, time    string
		source      string
		wantPayload any
	}{
		{
			file: "lifecycle.terminate.json", kind: messages.KindTerminateAction,
			id: "12345678-1234-1234-1234-123456789012", time: "2026-11-27T17:00:00Z", source: "aws.autoscaling",
			wantPayload: &messages.LifecycleAction{
				LifecycleActionToken: "87654321-4321-4321-4321-210987654321", AutoScalingGroupName: "my-asg",
				LifecycleHookName: "my-lifecycle-hook", EC2InstanceId: "i-1234567890abcdef0",
				LifecycleTransition: messages.TransitionTerminating, NotificationMetadata: "additional-info",
				Origin: "AutoScalingGroup", Destination: "EC2",
			},
		},
		{
			file: "lifecycle.launch.json", kind: messages.KindLaunchAction,
			id: "12345678-1234-1234-1234-123456789012", time: "2026-11-27T17:00:00Z", source: "aws.autoscaling",
			wantPayload: &messages.LifecycleAction{
				LifecycleActionToken: "87654321-4321-4321-4321-210987654321", AutoScalingGroupName: "my-asg",
				LifecycleHookName: "my-lifecycle-hook", EC2InstanceId: "i-1234567890abcdef0",
				LifecycleTransition: messages.TransitionLaunching, NotificationMetadata: "additional-info",
				Origin: "EC2", Destination: "AutoScalingGroup",
			},
		},
		{
			file: "spot.interruption.json", kind: messages.KindSpotInterruption,
			id: "12345678-1234-1234-1234-123456789012", time: "2026-11-27T17:00:00Z", source: "aws.ec2",
			wantPayload: &messages.SpotInterruption{InstanceID: "i-1234567890abcdef0", InstanceAction: "terminate"},
		},
		{
			file: "spot.rebalance.json", kind: messages.KindRebalance,
			id: "12345678-1234-1234-1234-123456789012", time: "2026-11-27T17:00:00Z", source: "aws.ec2",
			wantPayload: &messages.Rebalance{InstanceID: "i-1234567890abcdef0"},
		},
		{
			file: "instance.state.json", kind: messages.KindStateChange,
			id: "7bf73129-1428-4cd3-a780-95db273d1602", time: "2021-11-11T21:29:54Z", source: "aws.ec2",
			wantPayload: &messages.StateChange{InstanceID: "i-1234567890abcdef0", State: messages.StatePending},
		},
		{
			file: "scheduled.json", kind: messages.KindScheduled,
			id: "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", time: "2015-10-08T16:53:06Z", source: "aws.events",
			wantPayload: &messages.Scheduled{
				RuleARN:  "arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule",
				RuleName: "my-scheduled-rule",
			},
		},
		{
			file: "parameter.change.json", kind: messages.KindParameterChange,
			id: "6a7e4feb-b491-4cf7-a9f1-bf3703497718", time: "2017-05-22T16:43:48Z", source: "aws.ssm",
			wantPayload: &messages.ParameterChange{Name: "foo", Operation: messages.ParameterCreate, Type: "String", Description: "Sample Parameter"},
		},
		{
			file: "stack.status.json", kind: messages.KindStackStatus,
			id: "6a7e8feb-b491-4cf7-a9f1-bf3703467718", time: "2017-12-22T18:43:48Z", source: "aws.cloudformation",
			wantPayload: &messages.StackStatus{
				StackID:   "arn:aws:cloudformation:us-west-1:111122223333:stack/teststack",
				StackName: "teststack", Status: "CREATE_COMPLETE",
			},
		},
	}
	if len(tests) != len(messages.EventKinds()) {
		t.Fatalf("%d samples for %d registered event kinds: every kind needs its example", len(tests), len(messages.EventKinds()))
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			body := readTestdata(t, tt.file)
			if got := messages.Sample(tt.kind); string(got) != string(body) {
				t.Errorf("Sample(%s) is not testdata/%s", tt.kind, tt.file)
			}
			msg, err := messages.Parse(body)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if msg.Kind != tt.kind || msg.ID != tt.id || !msg.Time.Equal(mustTime(t, tt.time)) {
				t.Errorf("got kind %q id %q time %v, want %q %q %s", msg.Kind, msg.ID, msg.Time, tt.kind, tt.id, tt.time)
			}
			if msg.Event == nil || msg.Event.Source != tt.source || msg.Event.ID != tt.id || len(msg.Event.Detail) == 0 {
				t.Errorf("envelope %+v: want source %q, id %q and the raw detail", msg.Event, tt.source, tt.id)
			}
			if !reflect.DeepEqual(msg.Payload, tt.wantPayload) {
				t.Errorf("payload\n got %#v\nwant %#v", msg.Payload, tt.wantPayload)
			}
		})
	}
}

func TestEventKindsAreRegisteredOnce(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	kinds := map[messages.Kind]bool{}
	for _, k := range messages.EventKinds() {
		key := k.Source + "\x00" + k.DetailType
		if seen[key] || kinds[k.Kind] {
			t.Errorf("%s / %s (%s) registered twice", k.Source, k.DetailType, k.Kind)
		}
		seen[key], kinds[k.Kind] = true, true
	}
}

// mutate decodes body, applies f to the object and encodes it again.
func mutate(t *testing.T, body []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func detail(m map[string]any) map[string]any { return m["detail"].(map[string]any) }

func wantInvalid(t *testing.T, body []byte, wantReason ...string) *messages.InvalidError {
	t.Helper()
	msg, err := messages.Parse(body)
	var inv *messages.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Parse(%.200s) = %v, %v; want *InvalidError", body, msg, err)
	}
	if msg != nil {
		t.Errorf("Parse returned a message with an InvalidError: %+v", msg)
	}
	if !messages.IsPermanent(err) {
		t.Errorf("InvalidError is not permanent")
	}
	for _, w := range wantReason {
		if !strings.Contains(inv.Reason, w) {
			t.Errorf("reason %q does not contain %q", inv.Reason, w)
		}
	}
	return inv
}

// TestParseEventMutations breaks every sample in the ways a malformed event can be broken.
func TestParseEventMutations(t *testing.T) {
	t.Parallel()
	// Envelope mutations apply to every kind.
	envelope := []struct {
		name   string
		f      func(m map[string]any)
		reason []string
	}{
		{"no id", func(m map[string]any) { delete(m, "id") }, []string{`"id" is missing`}},
		{"no time", func(m map[string]any) { delete(m, "time") }, []string{`"time" is missing`}},
		{"placeholder time", func(m map[string]any) { m["time"] = "yyyy-mm-ddThh:mm:ssZ" }, []string{`"time"`, "RFC 3339"}},
		{"numeric time", func(m map[string]any) { m["time"] = 1700000000 }, []string{`"time"`, "want a string"}},
		{"no detail", func(m map[string]any) { delete(m, "detail") }, []string{`"detail" is missing`}},
		{"detail null", func(m map[string]any) { m["detail"] = nil }, []string{`"detail"`, "want a JSON object, got null"}},
		{"detail string", func(m map[string]any) { m["detail"] = "x" }, []string{`"detail"`, "want a JSON object, got string"}},
		{"resources string", func(m map[string]any) { m["resources"] = "x" }, []string{`"resources"`, "want an array"}},
		{"no detail-type", func(m map[string]any) { delete(m, "detail-type") }, []string{`"detail-type" is missing`}},
		{"no source", func(m map[string]any) { delete(m, "source") }, []string{`"source" is missing`}},
		{"id number", func(m map[string]any) { m["id"] = 7 }, []string{`"id"`, "want a string, got JSON number"}},
	}
	for _, k := range messages.EventKinds() {
		sample := messages.Sample(k.Kind)
		for _, tt := range envelope {
			t.Run(string(k.Kind)+"/"+tt.name, func(t *testing.T) {
				wantInvalid(t, mutate(t, sample, tt.f), tt.reason...)
			})
		}
		t.Run(string(k.Kind)+"/unknown fields are ignored", func(t *testing.T) {
			body := mutate(t, sample, func(m map[string]any) {
				m["replay-name"] = "x"
				detail(m)["added-by-aws-later"] = map[string]any{"a": 1}
			})
			if msg, err := messages.Parse(body); err != nil || msg.Kind != k.Kind {
				t.Fatalf("Parse = %v, %v; want kind %s", msg, err, k.Kind)
			}
		})
	}

	// Detail mutations: every required detail field missing, and mistyped.
	required := map[messages.Kind][]string{
		messages.KindTerminateAction:  {"LifecycleActionToken", "AutoScalingGroupName", "LifecycleHookName", "EC2InstanceId", "LifecycleTransition"},
		messages.KindLaunchAction:     {"LifecycleActionToken", "AutoScalingGroupName", "LifecycleHookName", "EC2InstanceId", "LifecycleTransition"},
		messages.KindSpotInterruption: {"instance-id", "instance-action"},
		messages.KindRebalance:        {"instance-id"},
		messages.KindStateChange:      {"instance-id", "state"},
		messages.KindParameterChange:  {"name", "operation"},
		messages.KindStackStatus:      {"stack-id"},
	}
	for kind, fields := range required {
		sample := messages.Sample(kind)
		for _, field := range fields {
			t.Run(string(kind)+"/missing "+field, func(t *testing.T) {
				wantInvalid(t, mutate(t, sample, func(m map[string]any) { delete(detail(m), field) }),
					`"detail.`+field+`" is missing`)
			})
			t.Run(string(kind)+"/mistyped "+field, func(t *testing.T) {
				wantInvalid(t, mutate(t, sample, func(m map[string]any) { detail(m)[field] = 42 }),
					`"detail.`+field+`": want a string, got JSON number`)
			})
		}
	}

	one := []struct {
		name   string
		kind   messages.Kind
		f      func(m map[string]any)
		reason []string
	}{
		{"terminate with a launch transition", messages.KindTerminateAction,
			func(m map[string]any) { detail(m)["LifecycleTransition"] = messages.TransitionLaunching },
			[]string{`"detail.LifecycleTransition"`, "does not match detail-type"}},
		{"launch with a terminate transition", messages.KindLaunchAction,
			func(m map[string]any) { detail(m)["LifecycleTransition"] = messages.TransitionTerminating },
			[]string{`"detail.LifecycleTransition"`, "does not match detail-type"}},
		{"stack status without status", messages.KindStackStatus,
			func(m map[string]any) { delete(detail(m)["status-details"].(map[string]any), "status") },
			[]string{`"detail.status-details.status" is missing`}},
		{"stack status-details mistyped", messages.KindStackStatus,
			func(m map[string]any) { detail(m)["status-details"] = "CREATE_COMPLETE" },
			[]string{`"detail.status-details"`, "want an object"}},
		{"scheduled without resources", messages.KindScheduled,
			func(m map[string]any) { delete(m, "resources") }, []string{`"resources"`, "rule ARN"}},
		{"scheduled with empty resources", messages.KindScheduled,
			func(m map[string]any) { m["resources"] = []any{} }, []string{`"resources"`}},
		{"scheduled with a non-string resource", messages.KindScheduled,
			func(m map[string]any) { m["resources"] = []any{1} }, []string{`"resources[0]"`, "want a string"}},
		{"several problems at once", messages.KindTerminateAction,
			func(m map[string]any) { delete(detail(m), "EC2InstanceId"); delete(detail(m), "LifecycleHookName") },
			[]string{`"detail.EC2InstanceId" is missing`, `"detail.LifecycleHookName" is missing`}},
	}
	for _, tt := range one {
		t.Run(tt.name, func(t *testing.T) {
			wantInvalid(t, mutate(t, messages.Sample(tt.kind), tt.f), tt.reason...)
		})
	}
}

func TestScheduledRuleName(t *testing.T) {
	t.Parallel()
	for arn, want := range map[string]string{
		"arn:aws:events:us-east-1:123456789012:rule/runnerfleet-docker-tick":       "runnerfleet-docker-tick",
		"arn:aws:events:us-east-1:123456789012:rule/custom-bus/runnerfleet-x-tick": "runnerfleet-x-tick",
	} {
		body := mutate(t, messages.Sample(messages.KindScheduled), func(m map[string]any) { m["resources"] = []any{arn} })
		msg, err := messages.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.Payload.(*messages.Scheduled); got.RuleARN != arn || got.RuleName != want {
			t.Errorf("%s: got %+v, want name %q", arn, got, want)
		}
	}
}

func TestStateChangeLeaving(t *testing.T) {
	t.Parallel()
	for state, want := range map[string]bool{
		"pending": false, "running": false, "stopping": true, "stopped": true, "shutting-down": true, "terminated": true,
	} {
		if got := (&messages.StateChange{State: state}).Leaving(); got != want {
			t.Errorf("Leaving(%s) = %v, want %v", state, got, want)
		}
	}
}

// TestParseUnknownKind: a well-formed event of a kind we do not handle is ErrUnknownKind, with its
// envelope, so the router can ack and count it — not an InvalidError.
func TestParseUnknownKind(t *testing.T) {
	t.Parallel()
	body := mutate(t, messages.Sample(messages.KindTerminateAction), func(m map[string]any) {
		m["detail-type"] = "EC2 Instance Launch Successful"
		m["detail"] = map[string]any{"StatusCode": "InProgress"}
	})
	msg, err := messages.Parse(body)
	if !errors.Is(err, messages.ErrUnknownKind) {
		t.Fatalf("err = %v, want ErrUnknownKind", err)
	}
	if messages.IsPermanent(err) {
		t.Error("ErrUnknownKind must not be permanent")
	}
	if msg == nil || msg.Kind != messages.KindUnknown || msg.Event == nil ||
		msg.Event.Source != "aws.autoscaling" || msg.Event.DetailType != "EC2 Instance Launch Successful" ||
		msg.ID != "12345678-1234-1234-1234-123456789012" || msg.Payload != nil || msg.Time.IsZero() {
		t.Errorf("message %+v: want KindUnknown with the envelope", msg)
	}

	// A malformed envelope of an unknown kind is still invalid.
	body = mutate(t, body, func(m map[string]any) { delete(m, "time") })
	wantInvalid(t, body, `"time" is missing`)
}

// TestParseGarbage: bodies that are no message at all.
func TestParseGarbage(t *testing.T) {
	t.Parallel()
	huge := `{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","time":"2026-01-01T00:00:00Z","resources":["arn:aws:events:r:1:rule/a"],"detail":{"pad":"` +
		strings.Repeat("a", messages.MaxEventSize) + `"}}`
	tests := []struct {
		name, body string
		reason     []string
	}{
		{"empty", "", []string{"empty body"}},
		{"blank", " \n\t", []string{"empty body"}},
		{"null", "null", []string{"want a JSON object, got null"}},
		{"empty object", "{}", []string{"neither an EventBridge event"}},
		{"array", "[1,2]", []string{"want a JSON object, got array"}},
		{"number", "42", []string{"want a JSON object, got number"}},
		{"string", `"hello"`, []string{"want a JSON object, got string"}},
		{"truncated", `{"kind":"command",`, []string{"not valid JSON"}},
		{"not json", "Action=SendMessage&MessageBody=x", []string{"not valid JSON"}},
		{"trailing data", `{"kind":"command"} {"x":1}`, []string{"not valid JSON"}},
		{"kind mistyped", `{"kind":5}`, []string{`"kind"`, "want a string"}},
		{"unknown kind", `{"kind":"drain.finish"}`, []string{`"kind"`, `unknown kind "drain.finish"`}},
		{"oversize event", huge, []string{"exceeds", "256 KiB"}},
		{"xml", "<xml/>", []string{"not valid JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantInvalid(t, []byte(tt.body), tt.reason...)
		})
	}

	// Exactly at the limit is not refused for its size.
	atLimit := `{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","time":"2026-01-01T00:00:00Z","resources":["arn:aws:events:r:1:rule/a"],"detail":{"pad":"`
	atLimit += strings.Repeat("a", messages.MaxEventSize-len(atLimit)-3) + `"}}`
	if len(atLimit) != messages.MaxEventSize {
		t.Fatalf("test body is %d bytes", len(atLimit))
	}
	if _, err := messages.Parse([]byte(atLimit)); err != nil {
		t.Errorf("event of exactly 256 KiB: %v", err)
	}
}

func TestSampleOfEveryKindParses(t *testing.T) {
	t.Parallel()
	kinds := []messages.Kind{messages.KindCommand, messages.KindDrainStep, messages.KindFleetStep}
	for _, k := range messages.EventKinds() {
		kinds = append(kinds, k.Kind)
	}
	for _, k := range kinds {
		msg, err := messages.Parse(messages.Sample(k))
		if err != nil || msg.Kind != k {
			t.Errorf("Parse(Sample(%s)) = %+v, %v", k, msg, err)
		}
	}
	if b := messages.Sample(messages.KindUnknown); b != nil {
		t.Errorf("Sample(KindUnknown) = %s, want nil", b)
	}
}
