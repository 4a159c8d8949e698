package messages_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

func TestParseDrainStepExample(t *testing.T) {
	t.Parallel()
	msg, err := messages.Parse(readTestdata(t, "drain.step.json"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &messages.DrainStep{
		Fleet: "docker", InstanceID: "i-1234567890abcdef0", ActionToken: "87654321-4321-4321-4321-210987654321",
		GroupName: "my-asg", Attempt: 3, Step: "watch", ID: "5f0c7d7e-9a51-4b8e-8f7a-1d2c3b4a5e6f",
		IssuedAt: mustTime(t, "2026-11-27T17:05:00Z"),
	}
	if msg.Kind != messages.KindDrainStep || msg.ID != want.ID || !msg.Time.Equal(want.IssuedAt) || msg.Event != nil {
		t.Errorf("message %+v", msg)
	}
	if got := msg.Payload.(*messages.DrainStep); !reflect.DeepEqual(got, want) {
		t.Errorf("payload\n got %+v\nwant %+v", got, want)
	}
	if string(messages.Sample(messages.KindDrainStep)) != string(readTestdata(t, "drain.step.json")) {
		t.Error("Sample(KindDrainStep) is not testdata/drain.step.json")
	}
}

func TestDrainStepRoundTrip(t *testing.T) {
	t.Parallel()
	// The contract's fields only: Marshal draws an id, Parse reads everything back.
	s := messages.DrainStep{Fleet: "docker", InstanceID: "i-0123456789abcdef0", ActionToken: "tok-1", GroupName: "g", Attempt: 0}
	body, err := s.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !strings.Contains(string(body), `"kind":"drain.step"`) {
		t.Errorf("body %s lacks \"kind\":\"drain.step\"", body)
	}
	msg, err := messages.Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, body)
	}
	got := msg.Payload.(*messages.DrainStep)
	if got.ID == "" || msg.ID != got.ID {
		t.Errorf("Marshal drew no id: %+v / %s", got, msg.ID)
	}
	got.ID = ""
	if !reflect.DeepEqual(*got, s) {
		t.Errorf("round trip\n got %+v\nwant %+v", *got, s)
	}
	if !msg.Time.IsZero() {
		t.Errorf("Time = %v for a step without issue time", msg.Time)
	}

	// With every field.
	s = messages.DrainStep{Fleet: "f", InstanceID: "i-1", ActionToken: "t", GroupName: "g", Attempt: 7, Step: "finish",
		ID: "fixed", IssuedAt: time.Date(2026, 11, 27, 17, 0, 0, 1, time.UTC)}
	body, err = s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	msg, err = messages.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Payload.(*messages.DrainStep); !reflect.DeepEqual(*got, s) || msg.ID != "fixed" || !msg.Time.Equal(s.IssuedAt) {
		t.Errorf("round trip\n got %+v\nwant %+v", *got, s)
	}
}

func TestParseDrainStepMutations(t *testing.T) {
	t.Parallel()
	const valid = `{"kind":"drain.step","fleet":"docker","instance_id":"i-1234567890abcdef0","action_token":"tok","group_name":"my-asg","attempt":1}`
	if msg, err := messages.Parse([]byte(valid)); err != nil || msg.ID != "drain.step/i-1234567890abcdef0/1" {
		t.Fatalf("Parse(valid) = %+v, %v", msg, err)
	}
	tests := []struct {
		name   string
		body   string
		reason []string
	}{
		{"unknown field", strings.Replace(valid, `"attempt":1`, `"attempt":1,"jobs":2`, 1), []string{`unknown field "jobs"`}},
		{"key in another case", strings.Replace(valid, `"instance_id"`, `"Instance_ID"`, 1), []string{`"Instance_ID": member names are case-sensitive`}},
		{"attempt as string", strings.Replace(valid, `"attempt":1`, `"attempt":"1"`, 1), []string{`"attempt"`, "want an integer"}},
		{"negative attempt", strings.Replace(valid, `"attempt":1`, `"attempt":-1`, 1), []string{`"attempt": -1 is negative`}},
		{"no fleet", strings.Replace(valid, `"fleet":"docker",`, ``, 1), []string{`"fleet" is missing`}},
		{"no instance", strings.Replace(valid, `"instance_id":"i-1234567890abcdef0",`, ``, 1), []string{`"instance_id" is missing`}},
		{"no token", strings.Replace(valid, `"action_token":"tok",`, ``, 1), []string{`"action_token" is missing`}},
		{"no group", strings.Replace(valid, `,"group_name":"my-asg"`, ``, 1), []string{`"group_name" is missing`}},
		{"bad issued_at", strings.Replace(valid, `"attempt":1`, `"attempt":1,"issued_at":"now"`, 1), []string{`"issued_at"`, "RFC 3339"}},
		{"runner token", valid[:len(valid)-1] + `,"step":"glrt-CANARY"}`, []string{`"step" looks like a GitLab token`}},
		{"oversize", strings.Replace(valid, `"tok"`, `"`+strings.Repeat("t", messages.MaxCommandSize)+`"`, 1), []string{"exceeds", "64 KiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := wantInvalid(t, []byte(tt.body), tt.reason...)
			if strings.Contains(inv.Reason, "CANARY") {
				t.Errorf("reason quotes the secret: %q", inv.Reason)
			}
		})
	}
	if _, err := (messages.DrainStep{Fleet: "f"}).Marshal(); err == nil {
		t.Error("Marshal of an incomplete step succeeded")
	}
}
