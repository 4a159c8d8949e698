package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/launch"
	"github.com/runnerfleet/runnerfleet/handlers/update"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/router"
	"github.com/runnerfleet/runnerfleet/messages"
)

// deps are what the handlers are built from. Later issues add their clients here.
type deps struct {
	cfg     *config.Config
	logger  *slog.Logger
	metrics *workerMetrics
	// scaler decides each tick of a fleet and follows scale commands (handlers/scale).
	scaler scaler
	// drain takes one step of an instance's drain: a terminate lifecycle action or a follow-up
	// (handlers/drain).
	drain router.HandlerFunc
	// cycle runs rolling replacements and token rotations (handlers/cycle, issue 10); nil: none.
	cycle *cycle.Handler
	// interrupt handles spot and rebalance notices, state changes and drain commands; launch is the
	// launch gate (issue 7; both from infra/aws/marks.Wire); nil: not wired.
	interrupt *interrupt.Handler
	launch    *launch.Handler
	// update plans, applies and follows fleet stack updates (handlers/update, issue 9); nil: none.
	update *update.Handler
	// safety guards every command: unknown fleet, too old, an id already seen (issue 9).
	safety router.Middleware
	// tickDelay makes every tick wait this long (ctx-aware) before it finishes: a hidden flag for
	// shutdown tests, which need a slow step. Zero in production.
	tickDelay time.Duration
}

// scaler is what the worker asks of handlers/scale.
type scaler interface {
	// Tick decides one tick of the fleet; messageID dedupes a redelivered tick.
	Tick(ctx context.Context, fleet, messageID string) error
	// Command follows a tick or scale command.
	Command(ctx context.Context, c *messages.Command) error
}

// handlers is THE handler registry: one line per message kind. Kinds absent here are acked and
// counted as unknown (runnerfleet_messages_unknown_total). Each issue adds its line.
func handlers(d deps) router.Registry {
	command := commandHandler(d)
	if d.safety != nil { // issue 9: commands are refused when stale, repeated or for unknown fleets
		command = d.safety(command)
	}
	reg := router.Registry{
		messages.KindCommand:         command,
		messages.KindScheduled:       scheduledHandler(d),
		messages.KindTerminateAction: d.drain, // issue 5
		messages.KindDrainStep:       d.drain, // issue 5
	}
	if d.cycle != nil { // issue 10: token parameter changes start cycles
		reg[messages.KindParameterChange] = d.cycle.Handle
	}
	if d.interrupt != nil { // issue 7
		reg[messages.KindSpotInterruption] = d.interrupt.Handle
		reg[messages.KindRebalance] = d.interrupt.Handle
		reg[messages.KindStateChange] = d.interrupt.Handle
	}
	if d.launch != nil { // issue 7
		reg[messages.KindLaunchAction] = d.launch.Handle
	}
	if d.update != nil { // issue 9: stack status changes nudge an update sooner than the next tick
		reg[messages.KindStackStatus] = d.update.HandleStackStatus
	}
	return reg
}

// commandTypeHandlers dispatches publisher commands by type. A type without a handler is rejected
// (dead-lettered with the reason).
func commandTypeHandlers(d deps) map[messages.CommandType]func(ctx context.Context, c *messages.Command) error {
	return map[messages.CommandType]func(ctx context.Context, c *messages.Command) error{
		messages.CommandTick: func(ctx context.Context, c *messages.Command) error {
			return tick(ctx, d, c.Fleet, "command", c.ID)
		},
		messages.CommandScale: d.scaler.Command,
		messages.CommandCycle: func(ctx context.Context, c *messages.Command) error {
			if d.cycle == nil {
				return messages.Reject("command type %s is not wired in this worker", c.Type)
			}
			return d.cycle.Command(ctx, c) // issue 10
		},
		messages.CommandDrain: func(ctx context.Context, c *messages.Command) error {
			if d.interrupt == nil {
				return messages.Reject("command type %s is not wired in this worker", c.Type)
			}
			return d.interrupt.Retire(ctx, c) // issue 7
		},
		messages.CommandUpdate: func(ctx context.Context, c *messages.Command) error {
			if d.update == nil {
				return messages.Reject("command type %s is not wired in this worker", c.Type)
			}
			return d.update.HandleCommand(ctx, c) // issue 9
		},
	}
}

func commandHandler(d deps) router.HandlerFunc {
	byType := commandTypeHandlers(d)
	return func(ctx context.Context, m *messages.Message) error {
		c := m.Payload.(*messages.Command)
		if _, ok := d.cfg.Fleet(c.Fleet); !ok {
			return messages.Reject("command %s for unknown fleet %q", c.ID, c.Fleet)
		}
		h, ok := byType[c.Type]
		if !ok {
			return messages.Reject("command type %s has no handler", c.Type)
		}
		return h(ctx, c)
	}
}

// scheduledHandler ticks the fleet whose tick rule fired.
func scheduledHandler(d deps) router.HandlerFunc {
	return func(ctx context.Context, m *messages.Message) error {
		s := m.Payload.(*messages.Scheduled)
		name := fleetOfRule(d.cfg, s.RuleARN, s.RuleName)
		if name == "" {
			return messages.Reject("no fleet has tick rule %s", s.RuleARN)
		}
		return tick(ctx, d, name, "schedule", m.ID)
	}
}

// tick is one tick of a fleet: it counts and logs it, advances the fleet's cycle or update in
// progress by one step (issues 9, 10), then decides on scaling. messageID (the event's or the
// command's id) dedupes a redelivered tick.
func tick(ctx context.Context, d deps, fleet, source, messageID string) error {
	if d.tickDelay > 0 {
		select {
		case <-time.After(d.tickDelay):
		case <-ctx.Done():
			return fmt.Errorf("ticking fleet %s: %w", fleet, ctx.Err())
		}
	}
	d.metrics.ticks.WithLabelValues(fleet, source).Inc()
	d.logger.InfoContext(ctx, "tick", "tick_fleet", fleet, "source", source)
	// Cycle and update steps go here, before the scaling decision.
	active := false
	if d.cycle != nil { // issue 10
		var err error
		if active, err = d.cycle.Advance(ctx, fleet, messageID); err != nil {
			return err
		}
		// While a cycle owns the desired capacity the scaler still decides and reports but
		// applies nothing that resizes or removes (scale.Deps.Hold is the cycle handler).
	}
	if d.update != nil { // issue 9: one step of an update in progress; a failing step never blocks scaling
		if err := d.update.Advance(ctx, fleet); err != nil {
			d.logger.WarnContext(ctx, "update step", "tick_fleet", fleet, "error", err.Error())
		}
	}
	if d.interrupt != nil && !active { // issue 7: rebalance-marked instances are replaced before the decision
		d.interrupt.PrepareTick(ctx, fleet)
	}
	return d.scaler.Tick(ctx, fleet, messageID)
}

// kindTimeouts converts handler.timeouts (validated kinds) for the router.
func kindTimeouts(in map[string]time.Duration) map[messages.Kind]time.Duration {
	out := make(map[messages.Kind]time.Duration, len(in))
	for k, t := range in {
		out[messages.Kind(k)] = t
	}
	return out
}
