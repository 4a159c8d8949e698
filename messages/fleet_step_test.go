package messages_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/runnerfleet/runnerfleet/messages"
)

func TestParseFleetStep(t *testing.T) {
	t.Parallel()
	msg, err := messages.Parse(readTestdata(t, "fleet.step.json"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &messages.FleetStep{Fleet: "docker", Work: messages.FleetWorkCycle, Attempt: 2,
		ID: "9d1e6c2b-3f4a-4b5c-8d6e-7f8091a2b3c4", IssuedAt: mustTime(t, "2026-11-27T17:10:00Z")}
	if msg.Kind != messages.KindFleetStep || msg.ID != want.ID || !msg.Time.Equal(want.IssuedAt) {
		t.Errorf("message %+v", msg)
	}
	if got := msg.Payload.(*messages.FleetStep); !reflect.DeepEqual(got, want) {
		t.Errorf("payload\n got %+v\nwant %+v", got, want)
	}

	// Round trip of the smallest step: Marshal draws the id.
	body, err := messages.FleetStep{Fleet: "docker"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	msg, err = messages.Parse(body)
	if err != nil {
		t.Fatalf("Parse(%s): %v", body, err)
	}
	if got := msg.Payload.(*messages.FleetStep); got.Fleet != "docker" || got.ID == "" || got.ID != msg.ID {
		t.Errorf("round trip: %+v", got)
	}

	const valid = `{"kind":"fleet.step","fleet":"docker"}`
	tests := []struct {
		name, body string
		reason     []string
	}{
		{"no fleet", `{"kind":"fleet.step"}`, []string{`"fleet" is missing`}},
		{"unknown work", strings.Replace(valid, `}`, `,"work":"reboot"}`, 1), []string{`"work": unknown work "reboot"`}},
		{"unknown field", strings.Replace(valid, `}`, `,"cycle":{}}`, 1), []string{`unknown field "cycle"`}},
		{"attempt mistyped", strings.Replace(valid, `}`, `,"attempt":"1"}`, 1), []string{`"attempt"`, "want an integer"}},
		{"negative attempt", strings.Replace(valid, `}`, `,"attempt":-3}`, 1), []string{`"attempt": -3 is negative`}},
		{"case variant", strings.Replace(valid, `"fleet"`, `"FLEET"`, 1), []string{"case-sensitive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantInvalid(t, []byte(tt.body), tt.reason...)
		})
	}
}
