package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/observe"
)

// queueAPI is what the readiness checks call.
type queueAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// readiness returns one check per queue and DLQ: the queue answers GetQueueAttributes.
func readiness(client queueAPI, q config.Queues) map[string]observe.Check {
	checks := map[string]observe.Check{}
	for role, queue := range q.Consumed() {
		checks["queue "+role] = func(ctx context.Context) error { return queueAnswers(ctx, client, queue.Name) }
		checks["dlq "+role] = func(ctx context.Context) error { return queueAnswers(ctx, client, queue.DeadLetter) }
	}
	return checks
}

func queueAnswers(ctx context.Context, client queueAPI, name string) error {
	url := name
	if !strings.HasPrefix(name, "http://") && !strings.HasPrefix(name, "https://") {
		out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("getting the url of %s: %w", name, err)
		}
		url = aws.ToString(out.QueueUrl)
	}
	_, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return fmt.Errorf("reading the attributes of %s: %w", name, err)
	}
	return nil
}
