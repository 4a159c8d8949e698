package aws

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// stalledContext is a context whose deadline has passed but whose timer has not fired yet, as a
// goroutine finds it when it resumes before the runtime's timers after a SIGSTOP.
type stalledContext struct {
	context.Context
	deadline time.Time
}

func (c stalledContext) Deadline() (time.Time, bool) { return c.deadline, true }

func TestDeadlineFenceRefusesLateCalls(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"QueueUrl":"http://127.0.0.1/123456789012/q"}`))
	}))
	defer srv.Close()
	cfg, err := LoadConfig(context.Background(), ConfigOptions{Region: "us-east-1", BaseEndpoint: srv.URL, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.NewFromConfig(cfg)

	late := stalledContext{Context: context.Background(), deadline: time.Now().Add(-time.Second)}
	if late.Err() != nil {
		t.Fatal("the stalled context must not report its deadline through Err")
	}
	_, err = client.GetQueueUrl(late, &sqs.GetQueueUrlInput{QueueName: awssdk.String("q")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call past its deadline: error %v, want context.DeadlineExceeded", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server past the deadline, want 0", n)
	}

	inTime, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := client.GetQueueUrl(inTime, &sqs.GetQueueUrlInput{QueueName: awssdk.String("q")})
	if err != nil {
		t.Fatalf("call within its deadline: %v", err)
	}
	if awssdk.ToString(out.QueueUrl) == "" || requests.Load() != 1 {
		t.Errorf("call within its deadline: url %q, %d requests; want an answer from the one request", awssdk.ToString(out.QueueUrl), requests.Load())
	}
}
