package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/runnerfleet/runnerfleet/cmd/worker/startlog"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/router"
)

// serve runs r until SIGTERM or SIGINT (or ctx ends), then shuts down within cfg.StopTimeout:
//
//  1. /readyz answers 503 and the router stops receiving (the transport stops its long polls);
//  2. in-flight steps get cfg.DrainTimeout() (stop timeout − 3 s) to finish and be acked;
//  3. then their contexts are cancelled: they return, their messages are nacked, and the
//     transport releases every message still held (visible again at once): nothing is lost;
//  4. the server stops; serve returns before the stop timeout whatever happens.
//
// A second signal during shutdown ends the process at once. background (the drain sweep) runs
// while the router does; its context ends when shutdown begins.
func serve(ctx context.Context, cfg *config.Config, r *router.Router, srv *observe.Server, logger *slog.Logger, background func(ctx context.Context)) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT, os.Interrupt)
	defer stop()

	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
		logger.Info(startlog.Running, "listen", srv.Addr(), "fleets", len(cfg.Fleets))
	case err := <-runErr:
		return fmt.Errorf("starting the router: %w", err)
	}

	bgCtx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	// The sweeps' steps run on step contexts of their own: cancelling bgCtx ends the loop, not a
	// step in flight, and the shutdown waits for it like for a message's step. Returning without
	// waiting would cut it off, and its drain would wait a lease and a grace for another replica.
	bgDone := make(chan struct{})
	if background != nil {
		go func() {
			defer close(bgDone)
			background(bgCtx)
		}()
	} else {
		close(bgDone)
	}

	select {
	case <-ctx.Done():
	case err := <-runErr:
		return fmt.Errorf("router stopped by itself: %w", err)
	}
	stopBackground()
	stop() // a second SIGINT or SIGTERM ends the process at once (the default action)
	begun := time.Now()
	logger.Info("stopping: no new messages; in-flight steps may finish", "stop_timeout", cfg.StopTimeout.String(), "drain_timeout", cfg.DrainTimeout().String())
	srv.SetStopping()
	cancelAt := time.AfterFunc(cfg.DrainTimeout(), func() {
		logger.Warn("drain timeout: cancelling in-flight steps; their messages are released")
		r.CancelInFlight()
	})
	defer cancelAt.Stop()
	go func() {
		if err := r.Close(); err != nil {
			logger.Warn("closing the router", "error", err.Error())
		}
	}()

	hard := time.NewTimer(cfg.StopTimeout - time.Second)
	defer hard.Stop()
	var err error
	for routerDone := false; !routerDone || bgDone != nil; {
		select {
		case err = <-runErr:
			routerDone = true
		case <-bgDone:
			bgDone = nil
		case <-hard.C:
			err = fmt.Errorf("handlers or a sweep still running at the stop timeout %s", cfg.StopTimeout)
			routerDone, bgDone = true, nil
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	logger.Info("worker stopped", "took", time.Since(begun).String())
	return err
}
