// Command demo is `make demo`: RunnerFleet at work on the local world of `make emulator`.
//
// It starts the runner simulator and the AWS emulator on the fixed ports of `make emulator`
// (refusing clearly when they are taken), creates what the worker stack would (queues, the
// instance-events rule, the state table), provisions the fleet from the runner template
// (deploy/runner/runner.yaml, stack "demo"), runs the worker binary with configs/local.yaml and
// sends a tick with the publisher binary. Then the product: jobs fed into the simulator pile up
// and the ticks scale the fleet out; a busy instance is terminated through its group and its
// drain keeps it in Terminating:Wait until its jobs end; once the load is gone idle instances are
// scaled in (drained too). Last, spot and rebalance notices, a malformed body and an unknown
// event. It prints a summary computed from the worker's /metrics, the emulator's state and log and
// the simulator (events handled, DLQ, scale decisions, drains by outcome, jobs killed) and exits
// 0 — or exits 1 naming what did not happen. --free-ports runs the same on free ports (the test
// does).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var o Options
	flag.StringVar(&o.Bin, "bin", "bin", "folder holding the worker and publisher binaries")
	flag.StringVar(&o.Config, "config", "configs/local.yaml", "the worker configuration of the fixed-port world")
	flag.BoolVar(&o.FreePorts, "free-ports", false, "run the world and the worker on free loopback ports instead of 4566, 9252 and 9090")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := Run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
