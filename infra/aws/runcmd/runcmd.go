// Package runcmd runs SSM documents on instances (SSM Run Command) for the drain: send a
// document, read the invocation's status, and tell whether SSM manages an instance at all.
// It satisfies handlers/drain.Commands.
package runcmd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
)

// API is the part of the SSM client Runner calls, with the SDK's signatures.
type API interface {
	SendCommand(ctx context.Context, in *ssm.SendCommandInput, optFns ...func(*ssm.Options)) (*ssm.SendCommandOutput, error)
	GetCommandInvocation(ctx context.Context, in *ssm.GetCommandInvocationInput, optFns ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error)
	DescribeInstanceInformation(ctx context.Context, in *ssm.DescribeInstanceInformationInput, optFns ...func(*ssm.Options)) (*ssm.DescribeInstanceInformationOutput, error)
	ListCommands(ctx context.Context, in *ssm.ListCommandsInput, optFns ...func(*ssm.Options)) (*ssm.ListCommandsOutput, error)
	DescribeDocument(ctx context.Context, in *ssm.DescribeDocumentInput, optFns ...func(*ssm.Options)) (*ssm.DescribeDocumentOutput, error)
}

// Pending is the status Status reports while SSM does not know the invocation yet.
const Pending = string(types.CommandInvocationStatusPending)

// Delivery timeouts of sent commands (SendCommand's TimeoutSeconds, independent of the
// document's executionTimeout): if SSM has not started a command on the agent by then, it never
// runs it and reports DeliveryTimedOut. AWS accepts 30 s at least.
const (
	DefaultDeliveryTimeout = 10 * time.Minute
	minDeliveryTimeout     = 30 * time.Second
)

// Runner sends and follows SSM commands. It is safe for concurrent use.
type Runner struct {
	api      API
	delivery time.Duration
}

// New returns a Runner whose commands SSM drops when undelivered after DefaultDeliveryTimeout;
// it refuses a nil client.
func New(api API) (*Runner, error) {
	if api == nil {
		return nil, errors.New("runcmd: nil ssm client")
	}
	return &Runner{api: api, delivery: DefaultDeliveryTimeout}, nil
}

// WithDeliveryTimeout returns a Runner whose commands SSM drops when undelivered after d (at
// least 30 s, AWS's floor). A caller that gives up on a pending command after d and sends
// another sets it to d: the command it gave up on can then never run later, beside or after the
// one that replaced it, when an agent that was away comes back.
func (r *Runner) WithDeliveryTimeout(d time.Duration) *Runner {
	c := *r
	c.delivery = max(d, minDeliveryTimeout)
	return &c
}

// DocumentExists reports whether the SSM document exists in this account and region (SSM
// answers a name it does not know with InvalidDocument; an IAM denial is an error).
func (r *Runner) DocumentExists(ctx context.Context, name string) (bool, error) {
	_, err := r.api.DescribeDocument(ctx, &ssm.DescribeDocumentInput{Name: aws.String(name)})
	var invalid *types.InvalidDocument
	switch {
	case errors.As(err, &invalid):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("describing document %s: %w", name, err)
	}
	return true, nil
}

// Managed reports whether SSM manages the instance: it is registered and not Inactive (stopped,
// terminated, deregistered). An agent whose connection is lost (ConnectionLost) still counts:
// that can pass (an SSM or network hiccup) while the runner runs jobs, and the drain treats a
// failing command to it as failing (retry, then watch the metrics), never as an instance
// nobody can drain, which it would complete at once.
func (r *Runner) Managed(ctx context.Context, instanceID string) (bool, error) {
	out, err := r.api.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{
		Filters: []types.InstanceInformationStringFilter{{Key: aws.String("InstanceIds"), Values: []string{instanceID}}},
	})
	if err != nil {
		if rfaws.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("describing ssm instance information of %s: %w", instanceID, err)
	}
	for _, info := range out.InstanceInformationList {
		if aws.ToString(info.InstanceId) == instanceID {
			return info.PingStatus != types.PingStatusInactive, nil
		}
	}
	return false, nil
}

// Send starts the named document on one instance and returns the command id.
//
// SendCommand has no idempotency token: a retry of an attempt whose answer was lost after SSM
// took the command sends the document a second time. So the SDK retries it only when SSM
// refused it (throttled, nothing sent). Any other failure is returned at once, and the caller
// settles it with Find before it sends again (the drain records it as unsure).
func (r *Runner) Send(ctx context.Context, document, instanceID string) (string, error) {
	out, err := r.api.SendCommand(ctx, &ssm.SendCommandInput{
		DocumentName:   aws.String(document),
		InstanceIds:    []string{instanceID},
		TimeoutSeconds: aws.Int32(int32(math.Ceil(r.delivery.Seconds()))),
		Comment:        aws.String("runnerfleet drain"),
	}, retryRefusedOnly)
	if err != nil {
		return "", fmt.Errorf("sending ssm document %s to %s: %w", document, instanceID, err)
	}
	if out.Command == nil || aws.ToString(out.Command.CommandId) == "" {
		return "", fmt.Errorf("sending ssm document %s to %s: no command id in the answer", document, instanceID)
	}
	return aws.ToString(out.Command.CommandId), nil
}

// findPages bounds how many pages of ListCommands Find reads: an instance being drained has a
// handful of commands; a page holds 50.
const findPages = 4

// Find returns the newest command of document sent to the instance at or after after, if any.
// It settles a Send whose answer was lost (a timeout, a connection reset): SendCommand has no
// idempotency token, so the only way not to send a document twice is to look for it.
func (r *Runner) Find(ctx context.Context, document, instanceID string, after time.Time) (string, bool, error) {
	in := &ssm.ListCommandsInput{
		InstanceId: aws.String(instanceID),
		MaxResults: aws.Int32(50),
		Filters: []types.CommandFilter{
			{Key: types.CommandFilterKeyDocumentName, Value: aws.String(document)},
			{Key: types.CommandFilterKeyInvokedAfter, Value: aws.String(after.UTC().Format(time.RFC3339))},
		},
	}
	var id string
	var newest time.Time
	for range findPages {
		out, err := r.api.ListCommands(ctx, in)
		if err != nil {
			return "", false, fmt.Errorf("listing ssm commands on %s: %w", instanceID, err)
		}
		// The filters are applied here too: not every SSM (the local emulator) applies them.
		for _, c := range out.Commands {
			at := aws.ToTime(c.RequestedDateTime)
			if aws.ToString(c.DocumentName) == document && !at.Before(after) && (id == "" || at.After(newest)) {
				id, newest = aws.ToString(c.CommandId), at
			}
		}
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	return id, id != "", nil
}

// Status returns the invocation's status (SSM's CommandInvocationStatus) and standard output.
// Right after SendCommand, SSM answers InvocationDoesNotExist for a moment: that is reported
// as Pending, not as an error.
func (r *Runner) Status(ctx context.Context, commandID, instanceID string) (string, string, error) {
	out, err := r.api.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{
		CommandId:  aws.String(commandID),
		InstanceId: aws.String(instanceID),
	})
	if err != nil {
		var notYet *types.InvocationDoesNotExist
		if errors.As(err, &notYet) || rfaws.IsNotFound(err) {
			return Pending, "", nil
		}
		return "", "", fmt.Errorf("reading ssm command %s on %s: %w", commandID, instanceID, err)
	}
	return string(out.Status), aws.ToString(out.StandardOutputContent), nil
}

// Wait polls Status until the command leaves Pending/InProgress/Delayed or ctx ends; for
// tools and tests (the drain itself never waits inside a step).
func (r *Runner) Wait(ctx context.Context, commandID, instanceID string, every time.Duration) (string, string, error) {
	for {
		status, out, err := r.Status(ctx, commandID, instanceID)
		if err != nil {
			return "", "", err
		}
		switch types.CommandInvocationStatus(status) {
		case types.CommandInvocationStatusPending, types.CommandInvocationStatusInProgress, types.CommandInvocationStatusDelayed:
		default:
			return status, out, nil
		}
		select {
		case <-ctx.Done():
			return status, out, fmt.Errorf("waiting for ssm command %s on %s: %w", commandID, instanceID, ctx.Err())
		case <-time.After(every):
		}
	}
}

// retryRefusedOnly narrows the client's retryer, for one call, to the errors that say the
// service did nothing: throttling.
func retryRefusedOnly(o *ssm.Options) {
	if o.Retryer != nil {
		o.Retryer = refusedOnly{Retryer: o.Retryer}
	}
}

// refusedOnly retries what its retryer would, but only when the error is a throttle.
type refusedOnly struct{ aws.Retryer }

var throttles = retry.IsErrorThrottles(retry.DefaultThrottles)

func (r refusedOnly) IsErrorRetryable(err error) bool {
	return throttles.IsErrorThrottle(err) == aws.TrueTernary && r.Retryer.IsErrorRetryable(err)
}
