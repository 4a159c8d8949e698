// Package emulator starts the local AWS world for tests: moto server 5.2.1 with RunnerFleet's
// extension (launcher.py and rfemu/, described in README.md) on a free loopback port, one per test
// package or test, and reads its ordered transition log.
//
// It never skips: when the emulator cannot start, the test fails with what went wrong and the
// line to run. Processes are started by this package and stopped by their PID at cleanup. (The
// one exception is opt-in: a container backend chosen with RUNNERFLEET_EMULATOR skips when no
// Docker daemon answers; see EnvBackend.)
package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	smithy "github.com/aws/smithy-go"
	"github.com/testcontainers/testcontainers-go"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// Region is the region every local world uses.
const Region = "us-east-1"

// startTimeout bounds how long moto may take to answer; it imports every service on start,
// which takes a few seconds on our 2-core machines, longer when tests start several at once.
const startTimeout = 60 * time.Second

// Emulator is one running AWS emulator.
type Emulator struct {
	// Endpoint is the base URL, e.g. http://127.0.0.1:41234.
	Endpoint string
	// Port is the loopback port it listens on.
	Port int

	cmd       *exec.Cmd
	container testcontainers.Container // set by a container backend instead of cmd
	output    *lockedBuffer
}

// Options tune Start.
type Options struct {
	// Port to listen on; 0 picks a free one (tests always use 0).
	Port int
	// RunnerSim is the runner simulator's base URL (loopback, e.g. http://127.0.0.1:9252); the
	// emulator announces every launch and termination there. Empty: no simulator.
	RunnerSim string
	// TickPeriod, when set, makes every rule with a schedule fire this often instead of at its
	// rate (tests use a few seconds so a rate(1 minute) tick arrives quickly). Zero: at the rate.
	TickPeriod time.Duration
	// Without names rfemu patch modules to leave out (e.g. "sqs" to measure moto's own FIFO long
	// poll in a benchmark). Tests leave it empty.
	Without []string
}

// Start starts an emulator and stops it when tb's test ends. It fails tb (never skips) when the
// emulator cannot start.
func Start(tb testing.TB, opts Options) *Emulator {
	tb.Helper()
	setTestEnv()
	e, err := Launch(opts)
	if errors.Is(err, ErrNoDocker) {
		tb.Skipf("%v (%s is set: the container backend is opt-in)", err, EnvBackend)
	}
	if err != nil {
		tb.Fatalf("starting the AWS emulator: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Stop(); err != nil {
			tb.Logf("stopping the AWS emulator: %v", err)
		}
	})
	return e
}

// Launch starts an emulator that the caller stops with Stop.
func Launch(opts Options) (*Emulator, error) {
	b, err := backend()
	if err != nil {
		return nil, err
	}
	if b != BackendSubprocess {
		if opts.RunnerSim != "" || opts.TickPeriod > 0 || len(opts.Without) > 0 || opts.Port != 0 {
			return nil, fmt.Errorf("emulator: the %s backend has none of our extension: this test needs the subprocess backend (unset %s)", b, EnvBackend)
		}
		return launchContainer(b)
	}
	if opts.Port != 0 {
		return launchOn(opts.Port, opts)
	}
	// FreePort's port is free when it answers, not necessarily when the emulator binds it: the
	// kernel may hand it out again meanwhile (as the local port of one of the many short
	// connections the tests open). Then the emulator exits at once: try another port.
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		e, err := launchOn(port, opts)
		if errors.Is(err, errPortTaken) && attempt < portAttempts {
			continue
		}
		return e, err
	}
}

// portAttempts bounds how many free ports Launch tries when the one it picked was taken before
// the emulator could bind it.
const portAttempts = 5

// errPortTaken: the emulator could not listen on its port (another program had bound it).
var errPortTaken = errors.New("the emulator's port was taken")

// launchOn starts the emulator on port.
func launchOn(port int, opts Options) (*Emulator, error) {
	bin, args, err := command(port, opts)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	// Own process group (moto's server may fork); and on Linux the kernel ends the emulator when
	// the test binary dies without cleanup (go test's timeout, ^C).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w (run `make tools` or: %s)", bin, err, installLine)
	}
	e := &Emulator{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port, cmd: cmd, output: out}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := e.waitReady(exited); err != nil {
		_ = e.kill()
		return nil, err
	}
	return e, nil
}

const installLine = "python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.1' 'cfn-lint>=1,<2'"

// motoVersion is the moto release launcher.py patches; it refuses any other.
const motoVersion = "5.2.1"

// command builds the launcher's command line: the Python whose moto is 5.2.1
// (RUNNERFLEET_PYTHON, the repository's .venv, or python3 on PATH) running launcher.py.
func command(port int, opts Options) (string, []string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", nil, err
	}
	launcher := filepath.Join(root, "integration", "emulator", "launcher.py")
	args := []string{launcher, "--port", fmt.Sprint(port)}
	if opts.RunnerSim != "" {
		args = append(args, "--runnersim", opts.RunnerSim)
	}
	if opts.TickPeriod > 0 {
		args = append(args, "--tick-period", opts.TickPeriod.String())
	}
	for _, m := range opts.Without {
		args = append(args, "--without", m)
	}
	py, err := findPython(root)
	if err != nil {
		return "", nil, err
	}
	return py, args, nil
}

// Python returns the interpreter the harness runs launcher.py with: the first of
// RUNNERFLEET_PYTHON, the repository's .venv/bin/python and python3 on PATH whose moto is 5.2.1.
func Python() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return findPython(root)
}

var (
	pythonOnce sync.Once
	pythonPath string
	pythonErr  error
)

// findPython returns the first interpreter whose moto is motoVersion.
func findPython(root string) (string, error) {
	pythonOnce.Do(func() {
		var candidates, tried []string
		if p := os.Getenv("RUNNERFLEET_PYTHON"); p != "" {
			candidates = append(candidates, p)
		}
		candidates = append(candidates, filepath.Join(root, ".venv", "bin", "python"))
		if p, err := exec.LookPath("python3"); err == nil {
			candidates = append(candidates, p)
		}
		for _, c := range candidates {
			out, err := exec.Command(c, "-c", "import moto; print(moto.__version__)").Output()
			v := strings.TrimSpace(string(out))
			if err == nil && v == motoVersion {
				pythonPath = c
				return
			}
			tried = append(tried, fmt.Sprintf("%s (moto %q, %v)", c, v, err))
		}
		pythonErr = fmt.Errorf("no Python with moto %s found (tried %s): run `make tools`, or: %s",
			motoVersion, strings.Join(tried, "; "), installLine)
	})
	return pythonPath, pythonErr
}

func (e *Emulator) waitReady(exited <-chan error) error {
	client := netguard.HTTPClient(2 * time.Second)
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			out := e.output.String()
			if strings.Contains(out, "Address already in use") {
				return fmt.Errorf("%w: the emulator exited before answering (%v); its output:\n%s", errPortTaken, err, out)
			}
			return fmt.Errorf("the emulator exited before answering (%v); its output:\n%s", err, out)
		default:
		}
		if pid, ok := healthPID(client, e.Endpoint); ok && pid == e.cmd.Process.Pid {
			return nil
		}
		// No answer yet, or an answer from another emulator that holds the port: ours will
		// exit with "Address already in use".
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the emulator did not answer on %s within %s; its output:\n%s", e.Endpoint, startTimeout, e.output.String())
}

// healthPID asks the emulator at endpoint for its process id; ok is false without a clear answer.
func healthPID(client *http.Client, endpoint string) (pid int, ok bool) {
	resp, err := client.Get(endpoint + "/_runnerfleet/health")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var h struct {
		PID int `json:"pid"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil {
		return 0, false
	}
	return h.PID, true
}

// Stop ends the emulator by its PID (its process group: moto's reloader may fork).
func (e *Emulator) Stop() error { return e.kill() }

func (e *Emulator) kill() error {
	if e.container != nil {
		if err := testcontainers.TerminateContainer(e.container); err != nil {
			return fmt.Errorf("terminating the emulator container: %w", err)
		}
		return nil
	}
	if e.cmd == nil || e.cmd.Process == nil {
		return nil
	}
	pid := e.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling emulator pid %d: %w", pid, err)
	}
	done := make(chan struct{})
	go func() {
		for i := 0; i < 50; i++ {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		close(done)
	}()
	<-done
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return nil
}

// PID is the emulator process's id (benchmarks read its CPU time from /proc).
func (e *Emulator) PID() int {
	if e.cmd == nil || e.cmd.Process == nil {
		return 0 // a container backend: no process of ours
	}
	return e.cmd.Process.Pid
}

// Output is what the emulator printed so far (for failure messages).
func (e *Emulator) Output() string { return e.output.String() }

// AWSConfig returns an SDK configuration that talks to this emulator the way users point the SDK
// at an endpoint (a base endpoint), with dummy credentials and a loopback-only HTTP client.
func (e *Emulator) AWSConfig(tb testing.TB) aws.Config {
	tb.Helper()
	cfg, err := rfaws.LoadConfig(context.Background(), rfaws.ConfigOptions{
		Region:       Region,
		BaseEndpoint: e.Endpoint,
		LoopbackOnly: true,
	})
	if err != nil {
		tb.Fatalf("aws config for the emulator: %v", err)
	}
	return cfg
}

var envOnce sync.Once

// SetTestEnv sets what Start sets for a test process: dummy credentials, no instance metadata
// lookups, the local region. For callers that share an emulator made with Launch.
func SetTestEnv() { setTestEnv() }

// setTestEnv sets the process environment that every test process uses: dummy credentials and no
// instance metadata lookups (which would go to 169.254.169.254).
func setTestEnv() {
	envOnce.Do(func() {
		for k, v := range map[string]string{
			"AWS_ACCESS_KEY_ID":         "testing",
			"AWS_SECRET_ACCESS_KEY":     "testing",
			"AWS_SESSION_TOKEN":         "testing",
			"AWS_EC2_METADATA_DISABLED": "true",
			"AWS_REGION":                Region,
		} {
			os.Setenv(k, v)
		}
		os.Unsetenv("AWS_PROFILE")
	})
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// UniqueName returns a resource name unique to this test run, starting with prefix, safe for
// queues, groups, stacks and tables (letters, digits, dashes; at most 64 characters).
func UniqueName(tb testing.TB, prefix string) string {
	tb.Helper()
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '-'
	}, tb.Name())
	s := fmt.Sprintf("%s-%s-%d", prefix, name, uniq.next())
	if len(s) > 64 {
		s = fmt.Sprintf("%s-%s-%d", prefix, name[len(name)-(64-len(prefix)-12):], uniq.next())
	}
	return s
}

var uniq counter

// Created is err, except when err says a resource of the name already exists: the names tests
// create are unique (UniqueName), so that answer comes from the SDK retrying a create that had
// landed, after the emulator closed the connection before its answer was read (seen under load).
// Use it on creates whose name is unique to the test: `if _, err := c.CreateX(...); emulator.Created(err) != nil`.
func Created(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && strings.Contains(apiErr.ErrorCode(), "AlreadyExists") {
		return nil
	}
	return err
}

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

// RepoRoot finds the repository root (the folder with go.mod) from this source file.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("emulator: cannot locate source file")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("emulator: go.mod not found above " + file)
		}
		dir = parent
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// maxOutput bounds the emulator output kept for failure messages (the newest part is kept).
const maxOutput = 1 << 20

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.buf.Len() > maxOutput {
		keep := b.buf.Bytes()[b.buf.Len()-maxOutput/2:]
		b.buf = *bytes.NewBuffer(append([]byte("[earlier output dropped]\n"), keep...))
	}
	return n, err
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
