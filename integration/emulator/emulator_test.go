package emulator_test

import (
	"context"
	"encoding/json"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

func TestEmulatorAnswersThroughTheSDK(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	client := sqs.NewFromConfig(e.AWSConfig(t))
	name := emulator.UniqueName(t, "runnerfleet-harness")
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	if got := aws.ToString(out.QueueUrl); got == "" {
		t.Fatal("CreateQueue returned no queue URL")
	}
}

// Every answer carries a request id as AWS's do (hotpaths.py draws it): 52 upper-case hex
// characters, a new one per request.
func TestEmulatorRequestIDs(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	client := sqs.NewFromConfig(e.AWSConfig(t))
	valid := regexp.MustCompile(`^[0-9A-F]{52}$`)
	seen := map[string]bool{}
	for range 3 {
		out, err := client.ListQueues(context.Background(), &sqs.ListQueuesInput{})
		if err != nil {
			t.Fatalf("ListQueues: %v", err)
		}
		id, _ := middleware.GetRequestIDMetadata(out.ResultMetadata)
		if !valid.MatchString(id) {
			t.Errorf("request id %q, want 52 upper-case hex characters", id)
		}
		seen[id] = true
	}
	if len(seen) != 3 {
		t.Errorf("%d distinct request ids in 3 requests", len(seen))
	}
}

// Concurrent first calls of a service load its botocore model once. moto's cache
// (functools.cache) lets concurrent misses each load it, all under one interpreter lock: 100
// drains' first SendCommands took 19-27 s each that way (TestHundredDrainsSideBySide).
func TestConcurrentFirstCallsLoadTheModelOnce(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	client := ssm.NewFromConfig(e.AWSConfig(t))
	if got := modelLoads(t, e)["ssm/service-2"]; got != 0 {
		t.Fatalf("the SSM model was loaded %d times before any SSM call: this test would prove nothing", got)
	}
	errs := make(chan error, 40)
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			if _, err := client.ListDocuments(context.Background(), &ssm.ListDocumentsInput{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("ListDocuments: %v", err)
	}
	if got := modelLoads(t, e)["ssm/service-2"]; got != 1 {
		t.Errorf("40 concurrent first SSM calls loaded the SSM model %d times, want 1", got)
	}
}

// modelLoads reads how often the emulator has read each botocore model (its health answer).
func modelLoads(t *testing.T, e *emulator.Emulator) map[string]int {
	t.Helper()
	resp, err := netguard.HTTPClient(5 * time.Second).Get(e.Endpoint + "/_runnerfleet/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		ModelLoads map[string]int `json:"model_loads"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.ModelLoads
}
