// Package world starts a whole local world for a test: the runner simulator and the AWS emulator,
// wired both ways (the emulator announces launches and terminations to the simulator and runs SSM
// drain documents against it; the simulator reports its transitions to the emulator's log), each
// on a free loopback port, both stopped when the test ends.
package world

import (
	"context"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

// Options tune Start.
type Options struct {
	// TickPeriod makes every scheduled rule fire this often (see emulator.Options.TickPeriod).
	TickPeriod time.Duration
	// Sim configures the runner simulator; its Addr and EmulatorURL are set by Start.
	Sim runnersim.Config
}

// World is one running local world.
type World struct {
	// Emulator is the AWS emulator (Endpoint, AWSConfig, Log, ...).
	Emulator *emulator.Emulator
	// Sim is the runner simulator, in this test process.
	Sim *runnersim.Sim
}

// Start starts the simulator, then the emulator pointed at it, then points the simulator at the
// emulator's log. It fails tb (never skips) when either cannot start. The emulator stops first at
// cleanup, then the simulator.
func Start(tb testing.TB, opts Options) *World {
	tb.Helper()
	cfg := opts.Sim
	cfg.Addr = "127.0.0.1:0"
	cfg.EmulatorURL = ""
	sim, err := runnersim.New(cfg)
	if err != nil {
		tb.Fatalf("local world: %v", err)
	}
	if err := sim.Start(); err != nil {
		tb.Fatalf("local world: %v", err)
	}
	tb.Cleanup(func() {
		if err := sim.Close(); err != nil {
			tb.Logf("local world: closing the runner simulator: %v", err)
		}
	})
	emu := emulator.Start(tb, emulator.Options{RunnerSim: sim.URL(), TickPeriod: opts.TickPeriod})
	if err := sim.SetEmulatorURL(emu.Endpoint); err != nil {
		tb.Fatalf("local world: %v", err)
	}
	return &World{Emulator: emu, Sim: sim}
}

// MetricsURLTemplate is the fleet metrics URL template pointing at this world's simulator
// (fleet.Settings.MetricsURL).
func (w *World) MetricsURLTemplate() string { return w.Sim.MetricsURLTemplate() }

// Log reads the emulator's ordered transition log from seq since (0: all of it).
func (w *World) Log(ctx context.Context, since int) ([]emulator.LogEvent, error) {
	return w.Emulator.Log(ctx, since)
}
