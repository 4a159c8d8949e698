package main

import (
	"strings"
	"testing"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/config"
)

// A fleet without tick_rule is valid (ticks by hand) but would never scale by itself: said once,
// at start-up.
func TestConfigWarningsNameAFleetWithoutTickRule(t *testing.T) {
	cfg := &config.Config{Fleets: []fleet.Settings{
		{Name: "ticked", GroupName: "a", TickRule: "runnerfleet-ticked-tick"},
		{Name: "manual", GroupName: "b"},
	}}
	w := configWarnings(cfg)
	if len(w) != 1 || !strings.Contains(w[0], `fleet "manual" has no tick_rule`) {
		t.Fatalf("warnings %q: want one, about fleet manual", w)
	}
}
