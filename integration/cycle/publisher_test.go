package cycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/gobuild"
	"github.com/runnerfleet/runnerfleet/messages"
)

var (
	buildOnce sync.Once
	pubPath   string
	buildErr  error
)

// publisher is cmd/publisher, built once per test binary.
func publisher(t testing.TB) string {
	t.Helper()
	return gobuild.Once(t, "github.com/runnerfleet/runnerfleet/cmd/publisher")
}

// controlQueue makes a FIFO control queue whose commands this test hands to the cycle handler,
// as the worker's router would, until the test ends.
func (e *env) controlQueue() string {
	e.t.Helper()
	ctx := context.Background()
	q, err := e.sqs.CreateQueue(ctx, &awssqs.CreateQueueInput{
		QueueName:  aws.String(emulator.UniqueName(e.t, "runnerfleet-control") + ".fifo"),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNameFifoQueue): "true"},
	})
	if err != nil {
		e.t.Fatalf("CreateQueue: %v", err)
	}
	url := aws.ToString(q.QueueUrl)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := e.sqs.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1, MaxNumberOfMessages: 10})
			if err != nil {
				continue
			}
			for _, m := range out.Messages {
				msg, err := messages.Parse([]byte(aws.ToString(m.Body)))
				if err == nil {
					e.mu.Lock()
					h := e.handler
					e.mu.Unlock()
					if err := h.Handle(ctx, msg); err != nil {
						e.t.Logf("handling %s: %v", msg.Kind, err)
					}
				} else {
					e.t.Errorf("parsing a control message: %v", err)
				}
				_, _ = e.sqs.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			}
		}
	}()
	e.t.Cleanup(func() { close(stop); <-done })
	return url
}

// workerConfig writes a worker config for this env (what publisher status reads) and returns
// its path.
func (e *env) workerConfig(queue string) string {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "worker.yaml")
	cfg := fmt.Sprintf("region: %s\nendpoint: %s\nloopback_only: true\nstate_table: %s\nqueues: {control: {name: %q}}\nfleets:\n  - {name: blue, group: %s, metrics_url: %q}\n",
		emulator.Region, e.w.Emulator.Endpoint, e.table, queue, e.group, e.w.MetricsURLTemplate())
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// run runs the publisher with args and returns its output and error.
func (e *env) run(args ...string) (string, error) {
	cmd := exec.Command(publisher(e.t), args...)
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "RUNNERFLEET_CONFIG=", "RUNNERFLEET_CONFIG_PARAMETER=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// publisher cycle --wait: sends the command, shows progress lines while the worker cycles, ends
// with a one-line outcome and exit 0; publisher status then shows the new instances and the
// finished cycle, as a table and as JSON.
func TestPublisherCycleWaitAndStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, spec{instances: 2})
	old := e.ids()
	e.jobsOnEach(8 * time.Second)
	e.newVersion()
	e.startTicking()
	queue := e.controlQueue()
	out, err := e.run("cycle", "--fleet", "blue", "--queue", queue, "--endpoint", e.w.Emulator.Endpoint, "--region", emulator.Region,
		"--table", e.table, "--surge", "1", "--max-unavailable", "1", "--wait", "--timeout", "3m", "--follow-interval", "200ms")
	t.Logf("publisher cycle --wait:\n%s", out)
	if err != nil {
		t.Fatalf("publisher cycle --wait: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "of fleet blue succeeded") || !strings.Contains(last, "(2 of 2 replaced)") {
		t.Errorf("last line %q is not the outcome", last)
	}
	for _, want := range []string{"replaced 0 of 2", "draining 1", "waiting for health", "retiring " + old[0]} {
		if !strings.Contains(out, want) && !(strings.HasPrefix(want, "retiring") && strings.Contains(out, "retiring "+old[1])) {
			t.Errorf("no progress line with %q", want)
		}
	}
	e.noneKilled()

	cfgPath := e.workerConfig(queue)
	out, err = e.run("status", "--fleet", "blue", "--config", cfgPath)
	t.Logf("publisher status:\n%s", out)
	if err != nil {
		t.Fatalf("publisher status: %v", err)
	}
	for _, id := range e.ids() {
		if !strings.Contains(out, id) {
			t.Errorf("status lacks instance %s", id)
		}
	}
	for _, want := range []string{"desired 2", "launch template version 2", "succeeded", "drains in progress: none", "open"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	out, err = e.run("status", "--fleet", "blue", "--config", cfgPath, "--json")
	if err != nil {
		t.Fatalf("publisher status --json: %v\n%s", err, out)
	}
	var st struct {
		Desired   int `json:"desired"`
		Instances []struct {
			ID       string `json:"id"`
			Intake   string `json:"intake"`
			Capacity int    `json:"capacity"`
			Version  string `json:"version"`
		} `json:"instances"`
		Cycle struct {
			Status string `json:"status"`
		} `json:"cycle"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if st.Desired != 2 || len(st.Instances) != 2 || st.Cycle.Status != "succeeded" {
		t.Fatalf("status --json: %+v", st)
	}
	for _, in := range st.Instances {
		if in.Intake != "open" || in.Capacity != 1 || in.Version != "2" {
			t.Errorf("instance %+v: want intake open, capacity 1, version 2", in)
		}
	}
}
