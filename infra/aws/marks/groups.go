package marks

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
)

// AutoScalingAPI is the part of the Auto Scaling client Groups calls.
type AutoScalingAPI interface {
	DescribeAutoScalingInstances(ctx context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error)
	TerminateInstanceInAutoScalingGroup(ctx context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, optFns ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error)
}

// Groups implements interrupt.Groups. It is safe for concurrent use.
type Groups struct{ api AutoScalingAPI }

var _ interrupt.Groups = (*Groups)(nil)

// NewGroups returns Groups; it refuses a nil client.
func NewGroups(api AutoScalingAPI) (*Groups, error) {
	if api == nil {
		return nil, errors.New("marks: nil autoscaling client")
	}
	return &Groups{api: api}, nil
}

// GroupOf returns the instance's group and lifecycle state; found is false when no group knows it.
func (g *Groups) GroupOf(ctx context.Context, id string) (string, string, bool, error) {
	out, err := g.api.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if rfaws.IsNotFound(err) {
			return "", "", false, nil
		}
		return "", "", false, fmt.Errorf("describing auto scaling instance %s: %w", id, err)
	}
	for _, in := range out.AutoScalingInstances {
		if aws.ToString(in.InstanceId) == id {
			return aws.ToString(in.AutoScalingGroupName), aws.ToString(in.LifecycleState), true, nil
		}
	}
	return "", "", false, nil
}

// describeBatch is DescribeAutoScalingInstances' largest InstanceIds list.
const describeBatch = 50

// GroupsOf returns the group of each instance a group knows, 50 instances per call. AWS leaves
// instances no group knows out of its answer; a batch refused as not found (an id it cannot
// parse, say) is asked again one instance at a time, since an instance wrongly reported absent
// would see its mark closed an hour later (interrupt.CloseStale).
func (g *Groups) GroupsOf(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for batch := range slices.Chunk(ids, describeBatch) {
		in := &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: batch}
		for {
			page, err := g.api.DescribeAutoScalingInstances(ctx, in)
			if err != nil && rfaws.IsNotFound(err) && len(batch) > 1 && in.NextToken == nil {
				if err := g.oneByOne(ctx, batch, out); err != nil {
					return nil, err
				}
				break
			}
			if err != nil && rfaws.IsNotFound(err) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("describing %d auto scaling instances: %w", len(batch), err)
			}
			for _, inst := range page.AutoScalingInstances {
				out[aws.ToString(inst.InstanceId)] = aws.ToString(inst.AutoScalingGroupName)
			}
			if aws.ToString(page.NextToken) == "" {
				break
			}
			in.NextToken = page.NextToken
		}
	}
	return out, nil
}

// oneByOne adds to out the group of each of ids that a group knows, one call per instance.
func (g *Groups) oneByOne(ctx context.Context, ids []string, out map[string]string) error {
	for _, id := range ids {
		group, _, found, err := g.GroupOf(ctx, id)
		if err != nil {
			return err
		}
		if found {
			out[id] = group
		}
	}
	return nil
}

// Terminate calls TerminateInstanceInAutoScalingGroup. A refusal that retrying cannot change
// (a validation error such as falling below the group's minimum size) wraps interrupt.ErrRefused.
func (g *Groups) Terminate(ctx context.Context, id string, decrement bool) error {
	_, err := g.api.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(decrement),
	})
	if err == nil {
		return nil
	}
	if rfaws.Classify(err) == rfaws.ClassPermanent {
		return fmt.Errorf("terminating %s through its auto scaling group (decrement %v): %w: %w", id, decrement, interrupt.ErrRefused, err)
	}
	return fmt.Errorf("terminating %s through its auto scaling group (decrement %v): %w", id, decrement, err)
}
