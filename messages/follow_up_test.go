package messages_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

// The follow-ups' wire bodies are a contract with messages already queued (a drain's follow-up may
// wait 15 minutes on the lifecycle queue while a new worker version rolls out): Marshal must write
// these exact bytes — field order, omitted empty fields, UTC RFC 3339 with nanoseconds, JSON's
// HTML escaping — and the documented examples in testdata must survive Parse and Marshal unchanged.
func TestFollowUpWireBytes(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("UTC+01:30", 3600+1800)
	issued := time.Date(2026, 11, 27, 18, 30, 0, 123456789, zone)
	tests := []struct {
		name    string
		marshal func() ([]byte, error)
		want    string
	}{
		{"smallest drain step", messages.DrainStep{Fleet: "f", InstanceID: "i-1", ActionToken: "t", GroupName: "g", ID: "id-1"}.Marshal,
			`{"kind":"drain.step","id":"id-1","fleet":"f","instance_id":"i-1","action_token":"t","group_name":"g","attempt":0}`},
		{"full drain step", messages.DrainStep{Fleet: "blue<&>", InstanceID: "i-0123456789abcdef0", ActionToken: "87654321-4321",
			GroupName: `grüne "asg"`, Attempt: 12, Step: "finish", ID: "id-2", IssuedAt: issued}.Marshal,
			`{"kind":"drain.step","id":"id-2","issued_at":"2026-11-27T17:00:00.123456789Z","fleet":"blue\u003c\u0026\u003e",` +
				`"instance_id":"i-0123456789abcdef0","action_token":"87654321-4321","group_name":"grüne \"asg\"","attempt":12,"step":"finish"}`},
		{"smallest fleet step", messages.FleetStep{Fleet: "f", ID: "id-3"}.Marshal,
			`{"kind":"fleet.step","id":"id-3","fleet":"f"}`},
		{"full fleet step", messages.FleetStep{Fleet: "blue<&>", Work: messages.FleetWorkUpdate, Attempt: 4, ID: "id-4",
			IssuedAt: time.Date(2026, 11, 27, 18, 30, 0, 5, zone)}.Marshal,
			`{"kind":"fleet.step","id":"id-4","issued_at":"2026-11-27T17:00:00.000000005Z","fleet":"blue\u003c\u0026\u003e","work":"update","attempt":4}`},
	}
	for _, tt := range tests {
		got, err := tt.marshal()
		if err != nil {
			t.Errorf("%s: Marshal: %v", tt.name, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}

	for _, k := range []messages.Kind{messages.KindDrainStep, messages.KindFleetStep} {
		file := readTestdata(t, string(k)+".json")
		msg, err := messages.Parse(file)
		if err != nil {
			t.Fatalf("Parse(testdata/%s.json): %v", k, err)
		}
		var got []byte
		switch p := msg.Payload.(type) {
		case *messages.DrainStep:
			got, err = p.Marshal()
		case *messages.FleetStep:
			got, err = p.Marshal()
		default:
			t.Fatalf("testdata/%s.json parsed to %T", k, msg.Payload)
		}
		if want := bytes.TrimSuffix(file, []byte("\n")); err != nil || !bytes.Equal(got, want) {
			t.Errorf("testdata/%s.json after Parse and Marshal (%v):\n got %s\nwant %s", k, err, got, want)
		}
	}
}
