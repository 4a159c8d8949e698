package sqs_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/goleak"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// world is the emulator every test of this package shares (moto takes seconds to start).
var world struct {
	emu *emulator.Emulator
	cfg aws.Config
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":         "testing",
		"AWS_SECRET_ACCESS_KEY":     "testing",
		"AWS_SESSION_TOKEN":         "testing",
		"AWS_EC2_METADATA_DISABLED": "true",
		"AWS_REGION":                emulator.Region,
	} {
		os.Setenv(k, v)
	}
	e, err := emulator.Launch(emulator.Options{})
	if err != nil {
		// Fail, never skip: the transport's tests must run against the emulator.
		fmt.Fprintf(os.Stderr, "starting the AWS emulator: %v\n", err)
		return 1
	}
	stop := func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the AWS emulator: %v\n", err)
		}
	}
	// A test binary killed (go test's timeout, ^C) still stops its emulator.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		if _, ok := <-sig; ok {
			stop()
			os.Exit(2)
		}
	}()
	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			signal.Stop(sig)
			close(sig)
			stop()
		})
	}
	defer cleanup()
	cfg, err := rfaws.LoadConfig(context.Background(), rfaws.ConfigOptions{
		Region: emulator.Region, BaseEndpoint: e.Endpoint, LoopbackOnly: true,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "aws config for the emulator: %v\n", err)
		return 1
	}
	world.emu, world.cfg = e, cfg
	code := m.Run()
	cleanup()
	if code != 0 {
		return code
	}
	// Every Subscribe loop, lease and handler goroutine must be gone once the tests closed their
	// subscribers; idle keep-alive connections of the shared SDK client may stay.
	if err := goleak.Find(
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	); err != nil {
		fmt.Fprintf(os.Stderr, "goroutines left behind: %v\n", err)
		return 1
	}
	return 0
}

func sqsClient() *sqs.Client { return sqs.NewFromConfig(world.cfg) }

// testLogger writes JSON logs to the test log only when -v is given.
func testLogger(tb testing.TB) *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = tbWriter{tb}
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}

// createQueue makes a queue named from the test; FIFO queues get content-based deduplication.
func createQueue(tb testing.TB, fifo bool, attrs map[string]string) string {
	tb.Helper()
	name := emulator.UniqueName(tb, "runnerfleet-sqs")
	if len(name) > 75 {
		name = name[len(name)-75:]
	}
	a := map[string]string{}
	if fifo {
		name += ".fifo"
		a["FifoQueue"] = "true"
		a["ContentBasedDeduplication"] = "true"
	}
	for k, v := range attrs {
		a[k] = v
	}
	out, err := sqsClient().CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: a})
	if err != nil {
		tb.Fatalf("creating queue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}
