package main

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/router"
)

// serveWith runs serve over an in-memory queue until ctx ends, with background as the sweeps.
func serveWith(t *testing.T, ctx context.Context, stopTimeout time.Duration, background func(context.Context)) error {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	r, err := router.New(router.Config{HandlerTimeout: time.Second, CloseTimeout: time.Second,
		Retry: router.Retry{MaxRetries: 0, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, Multiplier: 1}},
		router.Registry{}, ps, observe.NewMetrics(prometheus.NewRegistry()), logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddQueue(router.Queue{Name: "lifecycle", Topic: "lifecycle", DeadLetter: "lifecycle-dlq", Subscriber: ps}); err != nil {
		t.Fatal(err)
	}
	srv, err := observe.NewServer("127.0.0.1:0", prometheus.NewRegistry(), nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	return serve(ctx, &config.Config{StopTimeout: stopTimeout}, r, srv, logger, background)
}

// At shutdown the worker waits for a sweep's step in flight, as for a message's: its step runs on
// a context of its own, and cutting it off would leave its drain to wait out a lease and a grace.
func TestServeWaitsForTheSweepInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var finished atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- serveWith(t, ctx, 10*time.Second, func(ctx context.Context) {
			close(started)
			<-ctx.Done()
			time.Sleep(300 * time.Millisecond) // the step in flight, on its own context
			finished.Store(true)
		})
	}()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if !finished.Load() {
		t.Fatal("serve returned before the sweep's step in flight ended")
	}
}

// A sweep that does not end is cut at the stop timeout, like a handler.
func TestServeCutsASweepAtTheStopTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	block := make(chan struct{})
	defer close(block)
	done := make(chan error, 1)
	go func() {
		done <- serveWith(t, ctx, 2*time.Second, func(context.Context) { close(started); <-block })
	}()
	<-started
	cancel()
	// A serve that never returns is caught by go test's own -timeout.
	if err := <-done; err == nil || !strings.Contains(err.Error(), "at the stop timeout") {
		t.Fatalf("serve: %v, want the stop timeout's error with a sweep still running", err)
	}
}
