// Command demo is `make demo`: the worker end to end on the local world of `make emulator`.
//
// It starts the runner simulator and the AWS emulator on the fixed ports of `make emulator`
// (refusing clearly when they are taken), creates the queues, the EventBridge rules and a fleet's
// Auto Scaling group, runs the worker binary with configs/local.yaml, sends a tick with the
// publisher binary and makes the emulator emit an EventBridge event of every kind, then prints a
// summary computed from the worker's /metrics and the emulator's state and exits 0 — or exits 1
// naming what did not happen. --free-ports runs the same on free ports (the test does).
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
