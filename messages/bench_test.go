package messages_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

// BenchmarkParseLifecycle measures Parse of AWS's terminate lifecycle example into its typed struct
// against its floor, json.Unmarshal of the same bytes into map[string]any, in the same run: each
// iteration does both, timed separately, so both see the same machine load. It reports
// typed-ns/op, map-ns/op and their ratio typed/map; the goal is typed/map ≤ 1 (no slower).
// (ns/op is the sum of both.)
func BenchmarkParseLifecycle(b *testing.B) {
	body := messages.Sample(messages.KindTerminateAction)
	if msg, err := messages.Parse(body); err != nil || msg.Kind != messages.KindTerminateAction {
		b.Fatalf("Parse: %v, %v", msg, err)
	}
	var typed, floor time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := messages.Parse(body); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
		floor += time.Since(t1)
		typed += t1.Sub(t0)
	}
	n := float64(b.N)
	b.ReportMetric(float64(typed.Nanoseconds())/n, "typed-ns/op")
	b.ReportMetric(float64(floor.Nanoseconds())/n, "map-ns/op")
	b.ReportMetric(float64(typed)/float64(floor), "typed/map")
}

// BenchmarkParseCommand measures Parse of a scale command (strict decode and validation).
func BenchmarkParseCommand(b *testing.B) {
	body := messages.Sample(messages.KindCommand)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := messages.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}
