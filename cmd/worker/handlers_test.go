package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/messages"
)

// fakeScaler records the ticks and commands it is given (race-safe).
type fakeScaler struct {
	mu       sync.Mutex
	ticks    []string // fleet/messageID
	commands []messages.CommandType
}

func (f *fakeScaler) Tick(_ context.Context, fleet, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ticks = append(f.ticks, fleet+"/"+id)
	return nil
}

func (f *fakeScaler) Command(_ context.Context, c *messages.Command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, c.Type)
	return nil
}

var errDrainCalled = errors.New("drain handler called")

// Terminate lifecycle actions and drain follow-ups both go to the drain handler.
func TestDrainKindsRegistered(t *testing.T) {
	reg := handlers(testDeps(t))
	for _, k := range []messages.Kind{messages.KindTerminateAction, messages.KindDrainStep} {
		h, ok := reg[k]
		if !ok {
			t.Fatalf("no handler for %s", k)
		}
		if err := h(context.Background(), &messages.Message{Kind: k}); !errors.Is(err, errDrainCalled) {
			t.Errorf("%s: %v, want the drain handler's", k, err)
		}
	}
}

func testDeps(t *testing.T) deps {
	t.Helper()
	cfg := &config.Config{Fleets: []fleet.Settings{
		{Name: "blue", GroupName: "blue-asg", StackName: "blue-stack", TickRule: "blue-tick", TokenParameter: "/runnerfleet/blue/token"},
		{Name: "green", GroupName: "green-asg", TickRule: "arn:aws:events:us-east-1:1:rule/green-tick"},
	}}
	return deps{cfg: cfg, logger: observe.NewLogger(io.Discard, nil), metrics: newWorkerMetrics(prometheus.NewRegistry()), scaler: &fakeScaler{},
		drain: func(context.Context, *messages.Message) error { return errDrainCalled }}
}

func ticks(t *testing.T, d deps, fleet, source string) float64 {
	t.Helper()
	var m dto.Metric
	if err := d.metrics.ticks.WithLabelValues(fleet, source).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func command(t *testing.T, fleet string, typ messages.CommandType) *messages.Message {
	t.Helper()
	c := messages.NewCommand(fleet, typ, time.Now())
	return &messages.Message{Kind: messages.KindCommand, ID: c.ID, Payload: &c}
}

func TestCommandHandler(t *testing.T) {
	d := testDeps(t)
	h := handlers(d)[messages.KindCommand]
	tickCmd := command(t, "blue", messages.CommandTick)
	if err := h(context.Background(), tickCmd); err != nil {
		t.Fatalf("tick: %v", err)
	}
	if got := ticks(t, d, "blue", "command"); got != 1 {
		t.Errorf("ticks = %v, want 1", got)
	}
	if err := h(context.Background(), command(t, "blue", messages.CommandScale)); err != nil {
		t.Fatalf("scale: %v", err)
	}
	fs := d.scaler.(*fakeScaler)
	if want := "blue/" + tickCmd.ID; len(fs.ticks) != 1 || fs.ticks[0] != want {
		t.Errorf("scaler ticks %v, want [%s] (the command id dedupes a redelivery)", fs.ticks, want)
	}
	if len(fs.commands) != 1 || fs.commands[0] != messages.CommandScale {
		t.Errorf("scaler commands %v, want the scale command", fs.commands)
	}
	for _, tc := range []struct {
		fleet string
		typ   messages.CommandType
		want  string
	}{
		{"red", messages.CommandTick, `unknown fleet "red"`},
		{"blue", messages.CommandDrain, "not wired in this worker"},  // issue 7: wired in build(), not in these fakes
		{"blue", messages.CommandCycle, "not wired in this worker"},  // issue 10: wired in build(), not in these fakes
		{"blue", messages.CommandUpdate, "not wired in this worker"}, // issue 9: wired in build(), not in these fakes
	} {
		err := h(context.Background(), command(t, tc.fleet, tc.typ))
		if !messages.IsPermanent(err) || !strings.Contains(messages.Reason(err), tc.want) {
			t.Errorf("%s %s: %v, want a rejection saying %q", tc.fleet, tc.typ, err, tc.want)
		}
	}
}

func TestScheduledHandler(t *testing.T) {
	d := testDeps(t)
	h := handlers(d)[messages.KindScheduled]
	for _, s := range []*messages.Scheduled{
		{RuleARN: "arn:aws:events:us-east-1:1:rule/blue-tick", RuleName: "blue-tick"},
		{RuleARN: "arn:aws:events:us-east-1:1:rule/green-tick", RuleName: "green-tick"},
	} {
		if err := h(context.Background(), &messages.Message{Kind: messages.KindScheduled, ID: "ev-" + s.RuleName, Payload: s}); err != nil {
			t.Errorf("%s: %v", s.RuleName, err)
		}
	}
	if ticks(t, d, "blue", "schedule") != 1 || ticks(t, d, "green", "schedule") != 1 {
		t.Error("a tick per fleet expected (rule by name for blue, by ARN for green)")
	}
	if got := d.scaler.(*fakeScaler).ticks; len(got) != 2 || got[0] != "blue/ev-blue-tick" || got[1] != "green/ev-green-tick" {
		t.Errorf("scaler ticks %v, want each fleet once with its event id", got)
	}
	err := h(context.Background(), &messages.Message{Kind: messages.KindScheduled, Payload: &messages.Scheduled{RuleARN: "arn:x:rule/other", RuleName: "other"}})
	if !messages.IsPermanent(err) {
		t.Errorf("a tick of an unknown rule: %v, want a rejection", err)
	}
}

func TestSlowTickHonoursCancellation(t *testing.T) {
	d := testDeps(t)
	d.tickDelay = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := handlers(d)[messages.KindCommand](ctx, command(t, "blue", messages.CommandTick))
	if err == nil || messages.IsPermanent(err) {
		t.Errorf("a cancelled slow tick returned %v, want a transient error", err)
	}
}

func TestFleetOf(t *testing.T) {
	d := testDeps(t)
	of := fleetOf(d.cfg)
	for _, tc := range []struct {
		payload any
		want    string
	}{
		{&messages.LifecycleAction{AutoScalingGroupName: "green-asg"}, "green"},
		{&messages.DrainStep{Fleet: "blue"}, "blue"},
		{&messages.ParameterChange{Name: "/runnerfleet/blue/token"}, "blue"},
		{&messages.StackStatus{StackName: "blue-stack"}, "blue"},
		{&messages.Scheduled{RuleName: "blue-tick"}, "blue"},
		{&messages.SpotInterruption{InstanceID: "i-1"}, ""},
		{&messages.LifecycleAction{AutoScalingGroupName: "other"}, ""},
	} {
		if got := of(&messages.Message{Payload: tc.payload}); got != tc.want {
			t.Errorf("fleetOf(%T %+v) = %q, want %q", tc.payload, tc.payload, got, tc.want)
		}
	}
}
