package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/runnerfleet/runnerfleet/cmd/worker/startlog"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// workerProcess is the worker binary run by the demo.
type workerProcess struct {
	cmd  *exec.Cmd
	log  *os.File
	path string
	done chan error
}

// startWorker starts the worker binary with cfgPath and any further flags, its output going to
// logPath.
func startWorker(ctx context.Context, bin, cfgPath, logPath string, flags ...string) (*workerProcess, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"--config", cfgPath}, flags...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the worker: %w", err)
	}
	w := &workerProcess{cmd: cmd, log: f, path: logPath, done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait() }()
	return w, nil
}

// stop sends SIGTERM and waits up to limit for a clean exit.
func (w *workerProcess) stop(limit time.Duration) error {
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(limit):
		return fmt.Errorf("still running %s after SIGTERM", limit)
	}
}

// kill ends the worker by its PID if it still runs.
func (w *workerProcess) kill() {
	select {
	case err := <-w.done:
		w.done <- err
	default:
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	w.log.Close()
}

// listenAddr waits for the worker's "worker running" log line and returns the address it names:
// the one the worker bound, port 0 resolved.
func (w *workerProcess) listenAddr(ctx context.Context, limit time.Duration) (string, error) {
	var addr string
	err := waitFor(ctx, limit, func() bool {
		b, _ := os.ReadFile(w.path)
		addr, _ = startlog.ListenAddr(b)
		return addr != "" || w.exited()
	})
	switch {
	case err != nil:
		return "", err
	case addr == "":
		return "", errors.New("the worker exited")
	}
	return addr, nil
}

// exited reports whether the worker process has ended.
func (w *workerProcess) exited() bool {
	select {
	case err := <-w.done:
		w.done <- err
		return true
	default:
		return false
	}
}

// tail returns the end of the worker's log.
func (w *workerProcess) tail() string {
	b, _ := os.ReadFile(w.path)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func httpStatus(url string) int {
	resp, err := netguard.HTTPClient(5 * time.Second).Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func errorWithStderr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(bytes.TrimSpace(ee.Stderr)) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
