package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/messages"
)

func testDeps(t *testing.T) deps {
	t.Helper()
	cfg := &config.Config{Fleets: []fleet.Settings{
		{Name: "blue", GroupName: "blue-asg", StackName: "blue-stack", TickRule: "blue-tick", TokenParameter: "/runnerfleet/blue/token"},
		{Name: "green", GroupName: "green-asg", TickRule: "arn:aws:events:us-east-1:1:rule/green-tick"},
	}}
	return deps{cfg: cfg, logger: observe.NewLogger(io.Discard, nil), metrics: newWorkerMetrics(prometheus.NewRegistry())}
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
	if err := h(context.Background(), command(t, "blue", messages.CommandTick)); err != nil {
		t.Fatalf("tick: %v", err)
	}
	if got := ticks(t, d, "blue", "command"); got != 1 {
		t.Errorf("ticks = %v, want 1", got)
	}
	for _, tc := range []struct {
		fleet string
		typ   messages.CommandType
		want  string
	}{
		{"red", messages.CommandTick, `unknown fleet "red"`},
		{"blue", messages.CommandScale, "not yet available: issue 6"},
		{"blue", messages.CommandDrain, "not yet available: issue 5"},
		{"blue", messages.CommandCycle, "not yet available: issue 10"},
		{"blue", messages.CommandUpdate, "not yet available: issue 9"},
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
		if err := h(context.Background(), &messages.Message{Kind: messages.KindScheduled, Payload: s}); err != nil {
			t.Errorf("%s: %v", s.RuleName, err)
		}
	}
	if ticks(t, d, "blue", "schedule") != 1 || ticks(t, d, "green", "schedule") != 1 {
		t.Error("a tick per fleet expected (rule by name for blue, by ARN for green)")
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
