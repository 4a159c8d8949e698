package marks

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/launch"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/lifecycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/runcmd"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// WireConfig is what Wire needs from the worker's configuration.
type WireConfig struct {
	Fleets []fleet.Settings
	// Rebalance maps fleet names to their rebalance mode (absent: act).
	Rebalance map[string]interrupt.RebalanceMode
	// Gates maps fleet names to their launch gate (absent: derived from the fleet's launch hook).
	Gates map[string]launch.Gate
	// FollowUpQueue is the name or URL of the queue of launch-gate follow-ups (the worker's steps
	// queue, or its lifecycle queue).
	FollowUpQueue string
	// LoopbackOnly makes runner metrics requests refuse anything outside 127.0.0.0/8.
	LoopbackOnly bool
}

// WireAutoScalingAPI is every Auto Scaling call the wired handlers make (*autoscaling.Client).
type WireAutoScalingAPI interface {
	lifecycle.API
	AutoScalingAPI
}

// WireClients are the AWS clients and the publisher the wired handlers use.
type WireClients struct {
	AutoScaling WireAutoScalingAPI
	EC2         EC2API
	SSM         runcmd.API
	Table       Table
	// Publisher publishes to the worker's own queues (launch-gate follow-ups).
	Publisher message.Publisher
}

// Wiring is issue 7 wired for cmd/worker.
type Wiring struct {
	// Interrupt handles KindSpotInterruption, KindRebalance, KindStateChange and drain commands;
	// call Interrupt.PrepareTick(ctx, fleet) on each tick before the scaling decision.
	Interrupt *interrupt.Handler
	// Launch handles KindLaunchAction; call Launch.Sweep periodically (with the drain sweep).
	Launch *launch.Handler
	// Marks is the instance marks store.
	Marks *Store
}

// Group decorates the scale handler's Group so ticks see the marks.
func (w *Wiring) Group(g scale.Group) scale.Group { return Group{Group: g, Marks: w.Marks} }

// Wire builds the interrupt and launch handlers over real adapters, registering their metrics
// with reg.
func Wire(cfg WireConfig, c WireClients, reg prometheus.Registerer, logger *slog.Logger) (*Wiring, error) {
	if c.AutoScaling == nil || c.EC2 == nil || c.SSM == nil || c.Table == nil || c.Publisher == nil || logger == nil {
		return nil, errors.New("marks: wiring needs every client, the publisher and a logger")
	}
	store, err := NewStore(c.Table)
	if err != nil {
		return nil, err
	}
	drains, err := NewDrains(c.Table)
	if err != nil {
		return nil, err
	}
	groups, err := NewGroups(c.AutoScaling)
	if err != nil {
		return nil, err
	}
	cmds, err := runcmd.New(c.SSM)
	if err != nil {
		return nil, err
	}
	lc, err := lifecycle.New(c.AutoScaling)
	if err != nil {
		return nil, err
	}
	runners, err := NewRunners(scrape.HTTPClient(cfg.LoopbackOnly), cfg.Fleets, IPs{API: c.EC2})
	if err != nil {
		return nil, err
	}
	ih, err := interrupt.New(interrupt.Config{Fleets: cfg.Fleets, Rebalance: cfg.Rebalance}, interrupt.Deps{
		Groups: groups, Commands: Commands{Sender: cmds}, Jobs: runners, Marks: store, Drains: drains, Owners: Owners{API: c.EC2}, Logger: logger,
		Metrics: interrupt.NewMetrics(reg)})
	if err != nil {
		return nil, fmt.Errorf("building the interrupt handler: %w", err)
	}
	lh, err := launch.New(launch.Config{Fleets: cfg.Fleets, Gates: cfg.Gates}, launch.Deps{
		Store: c.Table, Lifecycle: lc, Health: runners, FollowUps: LaunchFollowUps{Publisher: c.Publisher, Queue: cfg.FollowUpQueue},
		Logger: logger, Metrics: launch.NewMetrics(reg)})
	if err != nil {
		return nil, fmt.Errorf("building the launch gate: %w", err)
	}
	return &Wiring{Interrupt: ih, Launch: lh, Marks: store}, nil
}
