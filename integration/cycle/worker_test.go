package cycle_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/runnerfleet/runnerfleet/cmd/worker/startlog"
	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/gobuild"
	"github.com/runnerfleet/runnerfleet/messages"
)

var (
	workerOnce sync.Once
	workerPath string
	workerErr  error
)

func workerBinary(t testing.TB) string {
	t.Helper()
	return gobuild.Once(t, "github.com/runnerfleet/runnerfleet/cmd/worker")
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startWorker runs the worker binary with the config at path until it is ready.
func (e *env) startWorker(path string) (*exec.Cmd, *lockedBuf) {
	e.t.Helper()
	// Port 0: the worker binds a free port and logs it ("worker running", listen). A port picked
	// here and handed over could be taken before the worker binds it, or by another test's worker,
	// whose /readyz would then answer for this one.
	out := &lockedBuf{}
	cmd := exec.Command(workerBinary(e.t), "--config", path, "--listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if e.t.Failed() {
			s := out.String()
			if len(s) > 20000 {
				s = s[len(s)-20000:]
			}
			e.t.Logf("worker output:\n%s", s)
		}
	})
	var listen string
	e.eventually("the worker running (its listen address logged)", func() bool {
		var ok bool
		listen, ok = startlog.ListenAddr([]byte(out.String()))
		return ok
	})
	client := netguard.HTTPClient(2 * time.Second)
	e.eventually("the worker ready", func() bool {
		resp, err := client.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd, out
}

// The whole path through the worker binary: publisher cycle --wait sends the command on the
// FIFO control queue; the worker (drain, scale and cycle handlers wired in cmd/worker) advances
// the cycle on each tick; the worker is SIGKILLed mid-cycle and a new one resumes it; the
// publisher sees the outcome; no job killed; never fewer than 2 serving (from the log).
func TestCycleThroughTheWorkerSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	// A worker SIGKILLed while it holds a drain step's lease leaves that drain to another replica
	// only after the lease (60 s with the worker's defaults) and the sweep grace (30 s): the hook
	// must outlast that, as production hooks do (CheckHooks warns below interval + lease + grace).
	// With the 5 s test hook the hook itself timed out and its instance's jobs were killed.
	e := newEnv(t, spec{instances: 3, hookTimeout: 150})
	old := e.ids()
	ctx := context.Background()
	// The in-process drain worker of newEnv keeps draining; the worker binary drains too (both
	// read the lifecycle queue: drains are claimed once in the state table).
	ctlDLQ := e.fifo(emulator.UniqueName(t, "runnerfleet-cdlq") + ".fifo")
	ctl := e.fifo(emulator.UniqueName(t, "runnerfleet-ctl") + ".fifo")
	lifeDLQ := e.dlq
	cfgPath := filepath.Join(t.TempDir(), "worker.yaml")
	cfg := fmt.Sprintf(`region: %s
endpoint: %s
loopback_only: true
log_level: info
stop_timeout: 5s
state_table: %s
sweep_interval: 1s
handler: {timeout: 30s, retry: {max_retries: 1, initial_interval: 100ms, max_interval: 200ms}}
queues:
  lifecycle: {name: %s, dead_letter: %s, visibility_timeout: 10s}
  control: {name: %s, dead_letter: %s, visibility_timeout: 10s}
fleets:
  - name: blue
    group: %s
    tick_rule: blue-tick
    metrics_url: %q
    drain: {poll_interval: 1s}
    policy: {min: 3, max: 3}
`, emulator.Region, e.w.Emulator.Endpoint, e.table, e.queue, lifeDLQ, ctl, ctlDLQ, e.group, e.w.MetricsURLTemplate())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.jobsOnEach(longJob)
	e.newVersion()
	since := len(e.log())
	w1, _ := e.startWorker(cfgPath)

	// The fleet's ticks: a tick command every 500 ms (what the tick rule does every minute).
	stopTicks, ticksDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticksDone)
		for {
			select {
			case <-stopTicks:
				return
			case <-time.After(500 * time.Millisecond):
			}
			c := messages.NewCommand("blue", messages.CommandTick, time.Now())
			body, _ := c.Marshal()
			_, _ = e.sqs.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(ctl), MessageBody: aws.String(string(body)),
				MessageGroupId: aws.String("blue"), MessageDeduplicationId: aws.String(c.ID)})
		}
	}()
	t.Cleanup(func() { close(stopTicks); <-ticksDone })

	pubOut, pubDone := startPublisher(t, "cycle", "--fleet", "blue", "--config", cfgPath, "--surge", "1", "--max-unavailable", "1",
		"--wait", "--timeout", "3m", "--follow-interval", "200ms")

	e.eventually("a first old instance retired", func() bool { return len(e.record().Retired) > 0 })
	// A second operator follows the cycle in progress (--follow sends nothing).
	followOut, followDone := startPublisher(t, "cycle", "--fleet", "blue", "--config", cfgPath, "--follow", "--timeout", "3m", "--follow-interval", "200ms")
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	steps := e.record().Steps
	time.Sleep(1500 * time.Millisecond)
	if got := e.record().Steps; got != steps {
		t.Fatalf("the cycle moved with no worker: steps %d → %d", steps, got)
	}
	e.startWorker(cfgPath)

	var pubErr error
	select {
	case pubErr = <-pubDone:
	case <-time.After(waitLimit):
		t.Fatalf("publisher cycle --wait did not end:\n%s", pubOut.String())
	}
	out := pubOut.String()
	t.Logf("publisher cycle --wait:\n%s", out)
	if pubErr != nil {
		t.Fatalf("publisher: %v", pubErr)
	}
	rec := e.record()
	if rec.Status != cycle.StatusSucceeded || !strings.Contains(out, "succeeded") {
		t.Fatalf("cycle %s: %s", rec.Status, rec.Reason)
	}
	select {
	case err := <-followDone:
		if fo := followOut.String(); err != nil || !strings.Contains(fo, "following cycle "+rec.ID) || !strings.Contains(fo, "succeeded") {
			t.Errorf("publisher cycle --follow: %v\n%s", err, fo)
		}
	case <-time.After(waitLimit):
		t.Errorf("publisher cycle --follow did not end:\n%s", followOut.String())
	}
	m := e.members()
	for _, id := range old {
		if _, ok := m[id]; ok {
			t.Errorf("old %s still in the group", id)
		}
	}
	if len(m) != 3 {
		t.Errorf("%d members, want 3", len(m))
	}
	evs := e.log()
	if least, at := minServing(evs, e.group, since); least < 2 {
		dumpLog(t, evs)
		t.Errorf("only %d InService intake-open instances at %s", least, at)
	}
	e.noneKilled()
}

func (e *env) fifo(name string) string {
	e.t.Helper()
	q, err := e.sqs.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{"FifoQueue": "true", "VisibilityTimeout": "10"}})
	if err != nil {
		e.t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return aws.ToString(q.QueueUrl)
}

// startPublisher starts the publisher with args (and no config from the environment) and returns
// its combined output and a channel that receives its exit; it is killed, by its PID, at cleanup
// if it is still running.
func startPublisher(t *testing.T, args ...string) (*lockedBuf, <-chan error) {
	t.Helper()
	cmd := exec.Command(publisher(t), args...)
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "RUNNERFLEET_CONFIG=", "RUNNERFLEET_CONFIG_PARAMETER=")
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done, exited := make(chan error, 1), make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
		}
	})
	return out, done
}
