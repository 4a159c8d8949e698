// Command drainworker runs one drain worker (integration/drain/worker) from a JSON config file
// until SIGTERM/SIGINT. The drain integration tests start it as a separate process so that it
// can be killed (SIGKILL) or paused (SIGSTOP) mid-drain.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/runnerfleet/runnerfleet/integration/drain/worker"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: drainworker CONFIG.json")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "drainworker:", err)
		os.Exit(1)
	}
	var cfg worker.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "drainworker: config:", err)
		os.Exit(1)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("worker", cfg.Owner)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	w, err := worker.Start(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drainworker:", err)
		os.Exit(1)
	}
	logger.Info("drain worker ready")
	<-ctx.Done()
	w.Stop()
}
