// Command runnersim runs the runner simulator alone, in the foreground, on loopback (`make
// emulator` runs it together with the AWS emulator; see integration/cmd/localworld).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

func main() {
	var cfg runnersim.Config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:9252", "loopback address to listen on")
	flag.StringVar(&cfg.EmulatorURL, "emulator", "", "AWS emulator base URL whose /_runnerfleet/log receives transitions")
	flag.IntVar(&cfg.Concurrent, "concurrent", runnersim.DefaultConcurrent, "jobs one instance runs at once")
	flag.DurationVar(&cfg.PollInterval, "poll-interval", runnersim.DefaultPollInterval, "how often a runner asks for jobs")
	flag.DurationVar(&cfg.AcceptableQueuing, "acceptable-queuing", 0, "job queuing threshold (0: off)")
	flag.Parse()
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "runnersim:", err)
		os.Exit(1)
	}
}

func run(cfg runnersim.Config) error {
	sim, err := runnersim.New(cfg)
	if err != nil {
		return err
	}
	if err := sim.Start(); err != nil {
		return err
	}
	fmt.Println("ready", sim.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return sim.Close()
}
