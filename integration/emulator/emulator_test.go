package emulator_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
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
