// Command localworld is `make emulator`: the local world in the foreground for people. It starts
// the runner simulator on 127.0.0.1:9252 and the AWS emulator on 127.0.0.1:4566 wired both ways,
// prints a line starting with "ready" once both answer, and stops both on Ctrl-C or SIGTERM.
// It refuses to start when either port is taken. Port 0 lets the kernel pick a free port for that
// part (the ready line names the address each part bound): how tests run it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

// Fixed ports of the local world (DESIGN.md, "Contracts other people rely on").
const (
	defaultAWSPort = 4566
	defaultSimPort = 9252
)

type options struct {
	awsPort, simPort int
	tickPeriod       time.Duration
	sim              runnersim.Config
}

func main() {
	var o options
	flag.IntVar(&o.awsPort, "aws-port", defaultAWSPort, "loopback port of the AWS emulator (0: a free one)")
	flag.IntVar(&o.simPort, "sim-port", defaultSimPort, "loopback port of the runner simulator (0: a free one)")
	flag.DurationVar(&o.tickPeriod, "tick-period", 0, "fire every scheduled rule this often (0: at its rate)")
	flag.IntVar(&o.sim.Concurrent, "concurrent", runnersim.DefaultConcurrent, "jobs one simulated runner runs at once")
	flag.DurationVar(&o.sim.PollInterval, "poll-interval", time.Second, "how often a simulated runner asks for jobs")
	flag.DurationVar(&o.sim.AcceptableQueuing, "acceptable-queuing", 0, "job queuing threshold of the simulated runners (0: off)")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(o, logger); err != nil {
		fmt.Fprintln(os.Stderr, "localworld:", err)
		os.Exit(1)
	}
}

func run(o options, logger *slog.Logger) error {
	if err := checkFree(o.awsPort, o.simPort); err != nil {
		return err
	}
	o.sim.Addr = fmt.Sprintf("127.0.0.1:%d", o.simPort)
	o.sim.Logger = logger
	sim, err := runnersim.New(o.sim)
	if err != nil {
		return err
	}
	if err := sim.Start(); err != nil {
		return err
	}
	defer sim.Close()

	// Signals are caught from here on, so Ctrl-C while moto starts still stops it by its PID.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	type launched struct {
		emu *emulator.Emulator
		err error
	}
	ready := make(chan launched, 1)
	go func() {
		emu, err := emulator.Launch(emulator.Options{Port: o.awsPort, RunnerSim: sim.URL(), TickPeriod: o.tickPeriod})
		ready <- launched{emu, err}
	}()
	var l launched
	select {
	case l = <-ready:
	case s := <-sig:
		fmt.Printf("stopping (%s) while the AWS emulator starts\n", s)
		if l = <-ready; l.err == nil {
			_ = l.emu.Stop()
		}
		return nil
	}
	if l.err != nil {
		return fmt.Errorf("starting the AWS emulator: %w", l.err)
	}
	emu := l.emu
	defer func() {
		if err := emu.Stop(); err != nil {
			logger.Error("stopping the AWS emulator", "err", err)
		}
	}()
	if err := sim.SetEmulatorURL(emu.Endpoint); err != nil {
		return err
	}

	fmt.Printf("ready aws=%s runnersim=%s metrics_url=%s\n", emu.Endpoint, sim.URL(), sim.MetricsURLTemplate())
	fmt.Println("  AWS_ENDPOINT_URL=" + emu.Endpoint + " AWS_REGION=" + emulator.Region + "; Ctrl-C stops both")
	s := <-sig
	fmt.Printf("stopping (%s)\n", s)
	return nil
}

// checkFree refuses ports that something already listens on, naming them; it checks both before
// starting anything, so a second `make emulator` never half-starts. Port 0 is always free.
func checkFree(ports ...int) error {
	var errs []error
	for _, p := range ports {
		if p == 0 {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			errs = append(errs, fmt.Errorf("port 127.0.0.1:%d is taken (another `make emulator`?): %w", p, err))
			continue
		}
		_ = l.Close()
	}
	return errors.Join(errs...)
}
