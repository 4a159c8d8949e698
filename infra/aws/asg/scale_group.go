package asg

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
)

// protectionBatch is SetInstanceProtection's limit of instance IDs per call.
const protectionBatch = 50

// AutoScalingAPI is the part of the Auto Scaling client Group calls: GroupsAPI and scale-in
// protection.
type AutoScalingAPI interface {
	GroupsAPI
	SetInstanceProtection(ctx context.Context, in *autoscaling.SetInstanceProtectionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error)
}

// Group implements scale.Group over Groups. It is safe for concurrent use.
type Group struct {
	groups *Groups
	as     AutoScalingAPI
}

var _ scale.Group = (*Group)(nil)

// New returns a Group; it refuses nil clients.
func New(as AutoScalingAPI, ec2api EC2API) (*Group, error) {
	groups, err := NewGroups(as, ec2api)
	if err != nil {
		return nil, err
	}
	return &Group{groups: groups, as: as}, nil
}

// Describe returns the group's desired, min and max capacity and its instances, with each one's
// lifecycle state, scale-in protection, launch template version, and from EC2 its private IP and
// launch time. An instance EC2 no longer lists keeps an empty IP (it is not scraped: its
// runner's URL would be wrong). A missing group wraps scale.ErrGroupNotFound.
func (g *Group) Describe(ctx context.Context, groupName string) (scale.GroupState, error) {
	s, err := g.groups.Read(ctx, groupName, scale.ErrGroupNotFound)
	if err != nil {
		return scale.GroupState{}, err
	}
	st := scale.GroupState{Name: s.Name, Desired: s.Desired, Min: s.Min, Max: s.Max}
	for _, m := range s.Members {
		st.Members = append(st.Members, scale.Member(m))
	}
	return st, nil
}

// SetDesiredCapacity sets the group's desired capacity at once, ignoring cooldowns: the policy
// has its own stabilization.
func (g *Group) SetDesiredCapacity(ctx context.Context, groupName string, desired int) error {
	return g.groups.SetDesiredCapacity(ctx, groupName, desired)
}

// SetProtection sets or clears scale-in protection, 50 instances per call. Every batch is tried
// even when an earlier one failed; the failures are returned together.
func (g *Group) SetProtection(ctx context.Context, groupName string, ids []string, protected bool) error {
	var errs []error
	for start := 0; start < len(ids); start += protectionBatch {
		chunk := ids[start:min(start+protectionBatch, len(ids))]
		err := g.setProtection(ctx, groupName, chunk, protected)
		var api smithy.APIError
		if err == nil || len(chunk) == 1 || !errors.As(err, &api) || api.ErrorCode() != "ValidationError" {
			if err != nil {
				errs = append(errs, fmt.Errorf("setting scale-in protection %v of %d instances of %s: %w", protected, len(chunk), groupName, err))
			}
			continue
		}
		// Auto Scaling refuses the whole call when one instance is no longer InService or
		// Standby (one terminating since the group was read): the others are set one by one,
		// so one leaving instance does not leave 49 busy ones unprotected until the next tick.
		for _, id := range chunk {
			if err := g.setProtection(ctx, groupName, []string{id}, protected); err != nil {
				errs = append(errs, fmt.Errorf("setting scale-in protection %v of %s in %s: %w", protected, id, groupName, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (g *Group) setProtection(ctx context.Context, groupName string, ids []string, protected bool) error {
	_, err := g.as.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String(groupName),
		InstanceIds:          ids,
		ProtectedFromScaleIn: aws.Bool(protected),
	})
	return err
}

// TerminateInstance terminates one instance through its group, decrementing the desired
// capacity so no replacement is launched; the group's terminate lifecycle hook still runs.
func (g *Group) TerminateInstance(ctx context.Context, instanceID string) error {
	return g.groups.TerminateInstance(ctx, instanceID)
}

// ReplaceInstance terminates one instance through its group without decrementing the desired
// capacity, so the group launches its replacement; the terminate lifecycle hook still runs.
func (g *Group) ReplaceInstance(ctx context.Context, instanceID string) error {
	return g.groups.ReplaceInstance(ctx, instanceID)
}
