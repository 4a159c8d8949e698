package interrupt

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// RebalanceMode says what a fleet does with a rebalance recommendation.
type RebalanceMode string

const (
	// RebalanceAct stops the instance's intake, marks it, and replaces it at the next tick.
	RebalanceAct RebalanceMode = "act"
	// RebalanceReport only marks and reports it (decision record, metrics); intake stays open.
	RebalanceReport RebalanceMode = "report"
)

// DefaultStopIntakeDocument is the stop-intake document of a fleet that names none.
const DefaultStopIntakeDocument = "runnerfleet-stop-intake"

// DefaultStepTimeout bounds the AWS calls of one message: a describe, an SSM send, a scrape and
// two conditional writes, each well under a second when AWS is healthy.
const DefaultStepTimeout = 20 * time.Second

// Config configures a Handler.
type Config struct {
	// Fleets are the managed fleets; notices for instances of other groups are acked and counted.
	Fleets []fleet.Settings
	// Rebalance maps a fleet name to its rebalance mode; absent fleets act (RebalanceAct).
	Rebalance map[string]RebalanceMode
	// StepTimeout bounds the calls of one message; default DefaultStepTimeout.
	StepTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.StepTimeout == 0 {
		c.StepTimeout = DefaultStepTimeout
	}
	for i := range c.Fleets {
		if c.Fleets[i].Documents.StopIntake == "" {
			c.Fleets[i].Documents.StopIntake = DefaultStopIntakeDocument
		}
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Fleets) == 0 {
		errs = append(errs, errors.New("interrupt: no fleets"))
	}
	names, groups := map[string]bool{}, map[string]bool{}
	for i, f := range c.Fleets {
		switch {
		case f.Name == "":
			errs = append(errs, fmt.Errorf("interrupt: fleet %d has no name", i))
		case names[f.Name]:
			errs = append(errs, fmt.Errorf("interrupt: fleet %q appears twice", f.Name))
		}
		names[f.Name] = true
		switch {
		case f.GroupName == "":
			errs = append(errs, fmt.Errorf("interrupt: fleet %q has no group", f.Name))
		case groups[f.GroupName]:
			errs = append(errs, fmt.Errorf("interrupt: group %q belongs to two fleets", f.GroupName))
		}
		groups[f.GroupName] = true
	}
	for name, mode := range c.Rebalance {
		if !names[name] {
			errs = append(errs, fmt.Errorf("interrupt: rebalance mode for unknown fleet %q", name))
		}
		if mode != RebalanceAct && mode != RebalanceReport {
			errs = append(errs, fmt.Errorf("interrupt: fleet %q: rebalance mode %q (want %q or %q)", name, mode, RebalanceAct, RebalanceReport))
		}
	}
	if c.StepTimeout < 0 {
		errs = append(errs, errors.New("interrupt: negative step timeout"))
	}
	return errors.Join(errs...)
}

// Deps are the handler's collaborators; New refuses a nil one (Clock and Metrics default).
type Deps struct {
	Groups   Groups
	Commands Commands
	Jobs     Jobs
	Marks    Marks
	Drains   Drains
	// Owners, when set, lets a state change of an instance outside every managed fleet stop at
	// one DescribeInstances: EC2's state-change rule cannot be filtered by group, so in a busy
	// account most of these events are someone else's, and looking for their drain means
	// listing the drains in progress. Nil: every leaving instance is looked up.
	Owners Owners
	Logger *slog.Logger
	// Metrics defaults to NewMetrics(nil).
	Metrics *Metrics
	// Clock defaults to the wall clock.
	Clock Clock
}

func (d Deps) validate() error {
	var errs []error
	for name, nilDep := range map[string]bool{
		"Groups": d.Groups == nil, "Commands": d.Commands == nil, "Jobs": d.Jobs == nil,
		"Marks": d.Marks == nil, "Drains": d.Drains == nil, "Logger": d.Logger == nil,
	} {
		if nilDep {
			errs = append(errs, fmt.Errorf("interrupt: nil %s", name))
		}
	}
	return errors.Join(errs...)
}
