package messages_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/runnerfleet/runnerfleet/messages"
)

// FuzzParse: Parse never panics, and what it returns keeps the contract — an error is
// ErrUnknownKind (with the envelope) or an *InvalidError (without a message); a message's Payload
// has the type its Kind promises; a parsed command or follow-up marshals to a body that parses
// to the same thing. Seeds: every file under testdata/ and a few broken bodies.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/*.json", "testdata/commands/*.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, s := range []string{"", "null", "{}", "[]", `{"kind":"command"}`, `{"kind":"drain.step"}`, `{"kind":"fleet.step","fleet":"f"}`,
		`{"detail-type":"x","source":"y"}`, `{"detail-type":"Scheduled Event","source":"aws.events","id":"1","time":"2026-01-01T00:00:00Z","detail":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := messages.Parse(body)
		if err != nil {
			var inv *messages.InvalidError
			switch {
			case errors.Is(err, messages.ErrUnknownKind):
				if msg == nil || msg.Event == nil || msg.Kind != messages.KindUnknown {
					t.Fatalf("ErrUnknownKind without its envelope: %+v", msg)
				}
			case errors.As(err, &inv):
				if msg != nil || inv.Reason == "" || !messages.IsPermanent(err) {
					t.Fatalf("InvalidError with message %+v or empty reason %q", msg, inv.Reason)
				}
			default:
				t.Fatalf("Parse returned an error outside the contract: %T %v", err, err)
			}
			return
		}
		switch p := msg.Payload.(type) {
		case *messages.LifecycleAction:
			if msg.Kind != messages.KindTerminateAction && msg.Kind != messages.KindLaunchAction {
				t.Fatalf("LifecycleAction under kind %s", msg.Kind)
			}
		case *messages.SpotInterruption, *messages.Rebalance, *messages.StateChange, *messages.Scheduled,
			*messages.ParameterChange, *messages.StackStatus:
			if msg.Event == nil {
				t.Fatalf("event kind %s without envelope", msg.Kind)
			}
		case *messages.Command:
			if msg.Kind != messages.KindCommand {
				t.Fatalf("Command under kind %s", msg.Kind)
			}
			b1, again := roundTrip(t, p.Marshal)
			if b2 := mustMarshal(t, again.Payload.(*messages.Command).Marshal); !bytes.Equal(b1, b2) {
				t.Fatalf("command does not survive Marshal/Parse:\n%s\n%s", b1, b2)
			}
		case *messages.DrainStep:
			if msg.Kind != messages.KindDrainStep {
				t.Fatalf("DrainStep under kind %s", msg.Kind)
			}
			b1, again := roundTrip(t, p.Marshal)
			if b2 := mustMarshal(t, again.Payload.(*messages.DrainStep).Marshal); !bytes.Equal(b1, b2) {
				t.Fatalf("drain step does not survive Marshal/Parse:\n%s\n%s", b1, b2)
			}
		case *messages.FleetStep:
			if msg.Kind != messages.KindFleetStep {
				t.Fatalf("FleetStep under kind %s", msg.Kind)
			}
			b1, again := roundTrip(t, p.Marshal)
			if b2 := mustMarshal(t, again.Payload.(*messages.FleetStep).Marshal); !bytes.Equal(b1, b2) {
				t.Fatalf("fleet step does not survive Marshal/Parse:\n%s\n%s", b1, b2)
			}
		default:
			t.Fatalf("kind %s with payload %T", msg.Kind, msg.Payload)
		}
	})
}

func mustMarshal(t *testing.T, marshal func() ([]byte, error)) []byte {
	t.Helper()
	b, err := marshal()
	if err != nil {
		t.Fatalf("Marshal of a parsed message: %v", err)
	}
	return b
}

// roundTrip marshals a parsed value and parses the body again.
func roundTrip(t *testing.T, marshal func() ([]byte, error)) ([]byte, *messages.Message) {
	t.Helper()
	b := mustMarshal(t, marshal)
	msg, err := messages.Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal(parsed)) = %v\n%s", err, b)
	}
	return b, msg
}
