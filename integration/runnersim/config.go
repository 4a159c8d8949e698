package runnersim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"
)

// Defaults of Config. They are short so that tests run in short real time; the binary and
// `make emulator` pass their own.
const (
	// DefaultConcurrent is gitlab-runner's `concurrent` of every simulated instance (also its
	// runner's `limit`): how many jobs one instance runs at once.
	DefaultConcurrent = 4
	// DefaultPollInterval is how often a simulated runner asks for jobs (gitlab-runner's
	// check_interval is 3 s; tests want faster pick-up).
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultHugeBodyBytes is the size of a "huge" metrics body: far beyond any sane scrape limit.
	DefaultHugeBodyBytes = 64 << 20
	// DefaultSlowChunkInterval paces a "slow" metrics body: 16 bytes per interval, so a body of a
	// few kilobytes takes minutes, longer than any scrape timeout.
	DefaultSlowChunkInterval = 250 * time.Millisecond
	// eventTimeout bounds one delivery of a transition to the emulator's log.
	eventTimeout = 3 * time.Second
)

// Config tunes a Sim.
type Config struct {
	// Addr is the loopback address to listen on; default "127.0.0.1:0" (a free port). Any host
	// other than a loopback address is refused.
	Addr string
	// Concurrent is every instance's concurrent setting and runner limit unless the
	// registration names its own; default DefaultConcurrent.
	Concurrent int
	// PollInterval is how often each runner asks the shared queue for jobs; default
	// DefaultPollInterval.
	PollInterval time.Duration
	// AcceptableQueuing is the runner's monitoring.job_queuing_durations threshold: a job that
	// waited longer than this before a runner picked it up increments
	// gitlab_runner_acceptable_job_queuing_duration_exceeded_total. Zero disables it (as an
	// absent configuration does in gitlab-runner).
	AcceptableQueuing time.Duration
	// EmulatorURL is the AWS emulator's base URL; every transition is posted to
	// {EmulatorURL}/_runnerfleet/log. Empty: transitions are only logged locally. It can be set
	// later with SetEmulatorURL. Must be a loopback URL.
	EmulatorURL string
	// HugeBodyBytes is the size of the body the "huge" fault serves; default DefaultHugeBodyBytes.
	HugeBodyBytes int
	// SlowChunkInterval paces the "slow" fault; default DefaultSlowChunkInterval.
	SlowChunkInterval time.Duration
	// Logger receives the simulator's own log; default discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Concurrent == 0 {
		c.Concurrent = DefaultConcurrent
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.HugeBodyBytes == 0 {
		c.HugeBodyBytes = DefaultHugeBodyBytes
	}
	if c.SlowChunkInterval == 0 {
		c.SlowChunkInterval = DefaultSlowChunkInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if err := checkLoopbackAddr(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr: %w", err))
	}
	if c.Concurrent < 1 {
		errs = append(errs, fmt.Errorf("concurrent must be at least 1, got %d", c.Concurrent))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("poll interval must be positive, got %s", c.PollInterval))
	}
	if c.AcceptableQueuing < 0 {
		errs = append(errs, fmt.Errorf("acceptable queuing must not be negative, got %s", c.AcceptableQueuing))
	}
	if c.HugeBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("huge body bytes must not be negative, got %d", c.HugeBodyBytes))
	}
	if c.SlowChunkInterval < 0 {
		errs = append(errs, fmt.Errorf("slow chunk interval must not be negative, got %s", c.SlowChunkInterval))
	}
	if c.EmulatorURL != "" {
		if err := checkLoopbackURL(c.EmulatorURL); err != nil {
			errs = append(errs, fmt.Errorf("emulator url: %w", err))
		}
	}
	return errors.Join(errs...)
}

// checkLoopbackAddr accepts host:port whose host is a loopback IP or "localhost".
func checkLoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (the local world stays on 127.0.0.1)", addr)
	}
	return nil
}

// checkLoopbackURL accepts http URLs on a loopback host.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%q: only http is served on loopback", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return checkLoopbackAddr(net.JoinHostPort(u.Hostname(), port))
}
