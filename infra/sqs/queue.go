package sqs

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// queueAPI is what the Subscriber calls: the SDK's own signatures, so *sqs.Client satisfies it.
type queueAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// sendAPI is what the Publisher calls.
type sendAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

type urlGetter interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

// IsFIFO reports whether the queue URL (or name) names a FIFO queue.
func IsFIFO(queue string) bool { return strings.HasSuffix(queue, ".fifo") }

func isURL(topic string) bool {
	return strings.HasPrefix(topic, "https://") || strings.HasPrefix(topic, "http://")
}

// urlCache resolves topics (queue URLs or names) to queue URLs, asking GetQueueUrl once per name.
type urlCache struct {
	client urlGetter
	mu     sync.Mutex
	urls   map[string]string
}

func (c *urlCache) resolve(ctx context.Context, topic string) (string, error) {
	if topic == "" {
		return "", fmt.Errorf("empty topic: want a queue url or name")
	}
	if isURL(topic) {
		return topic, nil
	}
	c.mu.Lock()
	url, ok := c.urls[topic]
	c.mu.Unlock()
	if ok {
		return url, nil
	}
	out, err := c.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(topic)})
	if err != nil {
		return "", fmt.Errorf("getting the url of queue %q: %w", topic, err)
	}
	url = aws.ToString(out.QueueUrl)
	c.mu.Lock()
	if c.urls == nil {
		c.urls = map[string]string{}
	}
	c.urls[topic] = url
	c.mu.Unlock()
	return url, nil
}
