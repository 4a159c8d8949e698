package emulator_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

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
