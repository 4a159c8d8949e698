package main

import (
	"fmt"

	"github.com/runnerfleet/runnerfleet/infra/config"
)

// configWarnings lists what is valid in cfg but most likely not what its author meant; the worker
// logs each at start-up.
func configWarnings(cfg *config.Config) []string {
	var out []string
	for _, f := range cfg.Fleets {
		if f.TickRule == "" {
			out = append(out, fmt.Sprintf("fleet %q has no tick_rule: the Scheduled Events of its stack's tick rule go to the DLQ "+
				"(no fleet has that rule), so it scales, and advances cycles and updates, only on publisher tick", f.Name))
		}
	}
	return out
}
