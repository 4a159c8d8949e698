package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/cyclestate"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// newCycler builds the cycle handler (issue 10): the cycle record in the state table, the group
// driven directly, runner health from a scraper of its own, and the instance marks (a runner a
// notice stopped does not serve). A fleet's `cycle:` settings are its
// defaults (zero values: surge 1, max-unavailable 1, health timeout 20 m, on a token change: cycle).
func newCycler(cfg *config.Config, c clients, marks cycle.Marks, reg prometheus.Registerer, logger *slog.Logger) (*cycle.Handler, error) {
	store, err := cyclestate.New(c.table)
	if err != nil {
		return nil, err
	}
	group, err := cyclestate.NewGroup(c.autoscaling, c.ec2)
	if err != nil {
		return nil, err
	}
	scraper, err := scrape.New(scrape.Config{}, scrape.HTTPClient(cfg.LoopbackOnly))
	if err != nil {
		return nil, err
	}
	health, err := cyclestate.NewHealth(scraper)
	if err != nil {
		return nil, err
	}
	fleets := make([]cycle.FleetConfig, len(cfg.Fleets))
	for i, f := range cfg.Fleets {
		fleets[i] = cycle.FleetConfig{Settings: f, MaxUnavailable: f.Cycle.MaxUnavailable, Surge: f.Cycle.Surge,
			HealthTimeout: f.Cycle.HealthTimeout, OnTokenChange: f.Cycle.OnTokenChange}
	}
	h, err := cycle.New(cycle.Config{Fleets: fleets}, cycle.Deps{Group: group, Health: health, State: store, Marks: marks, Registerer: reg}, logger)
	if err != nil {
		return nil, fmt.Errorf("building the cycle handler: %w", err)
	}
	// Once: the name this replica's claims carry in the cycle record (publisher status shows it),
	// to tell which task a claim is.
	logger.Info("cycle: this replica's claims are named", "owner", h.Owner())
	return h, nil
}
