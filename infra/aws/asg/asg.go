// Package asg is RunnerFleet's Auto Scaling adapter. Groups is the one implementation of what
// every handler does with a fleet's group: describe it with its instances' private addresses and
// launch times (from EC2), set its desired capacity, and terminate an instance through it. Group
// adapts Groups to the scale handler (handlers/scale.Group, adding scale-in protection);
// infra/aws/cyclestate.Group adapts it to the cycle handler.
package asg

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// filterBatch is EC2's limit of values in one filter.
const filterBatch = 200

// GroupsAPI is the part of the Auto Scaling client that Groups calls.
type GroupsAPI interface {
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
	SetDesiredCapacity(ctx context.Context, in *autoscaling.SetDesiredCapacityInput, optFns ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error)
	TerminateInstanceInAutoScalingGroup(ctx context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, optFns ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error)
}

// EC2API is the part of the EC2 client that Groups (and Group) call.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// Groups reads and changes Auto Scaling groups over the Auto Scaling and EC2 APIs. It is safe for
// concurrent use.
type Groups struct {
	as  GroupsAPI
	ec2 EC2API
}

// NewGroups returns a Groups; it refuses nil clients.
func NewGroups(as GroupsAPI, ec2api EC2API) (*Groups, error) {
	var errs []error
	if as == nil {
		errs = append(errs, errors.New("asg: nil autoscaling client"))
	}
	if ec2api == nil {
		errs = append(errs, errors.New("asg: nil ec2 client"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Groups{as: as, ec2: ec2api}, nil
}

// Snapshot is a group as Read found it.
type Snapshot struct {
	Name              string
	Desired, Min, Max int
	// LaunchTemplate is what a launch uses: the group's launch template, else its mixed
	// instances policy's; nil when it has neither. Its version may be "$Latest" or "$Default".
	LaunchTemplate *astypes.LaunchTemplateSpecification
	// Members are the group's instances, in the group's order.
	Members []Member
}

// Member is one instance of a group: in Instance its ID, lifecycle state, scale-in protection
// and launch template (id and version, from Auto Scaling) and its launch time (from EC2); and
// its private IP (from EC2).
type Member struct {
	Instance  fleet.Instance
	PrivateIP string
}

// Read describes the group: its desired, min and max capacity, the launch template a launch
// uses, and its members. An instance EC2 no longer lists keeps an empty IP and a zero launch
// time (a metrics URL built from the address then has no host, and the scraper reports the
// instance unknown, "no address", without dialling). A missing group is an error
// wrapping notFound, the sentinel of the handler the caller adapts Groups to. A failed EC2
// lookup fails it (ReadGroup does not).
func (g *Groups) Read(ctx context.Context, groupName string, notFound error) (Snapshot, error) {
	s, ec2Err, err := g.ReadGroup(ctx, groupName, notFound)
	if err != nil {
		return Snapshot{}, err
	}
	if ec2Err != nil {
		return Snapshot{}, ec2Err
	}
	return s, nil
}

// ReadGroup is Read, except that a failed EC2 lookup (DescribeInstances throttled, refused, not
// answered) does not fail it: the snapshot comes back with every member's private IP and launch
// time left empty, and the lookup's error as ec2Err — the caller's own failure to look, not the
// instances'. err is Auto Scaling's (a missing group wraps notFound); then ec2Err is nil.
func (g *Groups) ReadGroup(ctx context.Context, groupName string, notFound error) (s Snapshot, ec2Err, err error) {
	out, err := g.as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{groupName},
	})
	if err != nil {
		return Snapshot{}, nil, fmt.Errorf("describing auto scaling group %s: %w", groupName, err)
	}
	var grp *astypes.AutoScalingGroup
	for i := range out.AutoScalingGroups {
		if aws.ToString(out.AutoScalingGroups[i].AutoScalingGroupName) == groupName {
			grp = &out.AutoScalingGroups[i]
		}
	}
	if grp == nil {
		return Snapshot{}, nil, fmt.Errorf("describing auto scaling group %s: %w", groupName, notFound)
	}
	s = Snapshot{
		Name:           groupName,
		Desired:        int(aws.ToInt32(grp.DesiredCapacity)),
		Min:            int(aws.ToInt32(grp.MinSize)),
		Max:            int(aws.ToInt32(grp.MaxSize)),
		LaunchTemplate: grp.LaunchTemplate,
	}
	if s.LaunchTemplate == nil && grp.MixedInstancesPolicy != nil && grp.MixedInstancesPolicy.LaunchTemplate != nil {
		s.LaunchTemplate = grp.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification
	}
	ids := make([]string, 0, len(grp.Instances))
	for _, in := range grp.Instances {
		inst := fleet.Instance{
			ID:        aws.ToString(in.InstanceId),
			State:     fleet.LifecycleState(in.LifecycleState),
			Protected: aws.ToBool(in.ProtectedFromScaleIn),
		}
		if in.LaunchTemplate != nil {
			inst.LaunchTemplateID = aws.ToString(in.LaunchTemplate.LaunchTemplateId)
			inst.LaunchTemplateVersion = aws.ToString(in.LaunchTemplate.Version)
		}
		s.Members = append(s.Members, Member{Instance: inst})
		ids = append(ids, inst.ID)
	}
	found, err := g.instances(ctx, ids)
	if err != nil {
		return s, fmt.Errorf("describing instances of auto scaling group %s: %w", groupName, err), nil
	}
	for i := range s.Members {
		if in, ok := found[s.Members[i].Instance.ID]; ok {
			s.Members[i].PrivateIP = aws.ToString(in.PrivateIpAddress)
			s.Members[i].Instance.LaunchedAt = aws.ToTime(in.LaunchTime)
		}
	}
	return s, nil, nil
}

// instances reads the EC2 side of the instances with an instance-id filter: unlike InstanceIds,
// a filter does not fail the whole call for one instance that is already gone.
func (g *Groups) instances(ctx context.Context, ids []string) (map[string]ec2types.Instance, error) {
	out := make(map[string]ec2types.Instance, len(ids))
	for start := 0; start < len(ids); start += filterBatch {
		chunk := ids[start:min(start+filterBatch, len(ids))]
		p := ec2.NewDescribeInstancesPaginator(g.ec2, &ec2.DescribeInstancesInput{
			Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: chunk}},
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, r := range page.Reservations {
				for _, in := range r.Instances {
					out[aws.ToString(in.InstanceId)] = in
				}
			}
		}
	}
	return out, nil
}

// SetDesiredCapacity sets the group's desired capacity at once, ignoring cooldowns: the
// handlers have their own stabilization.
func (g *Groups) SetDesiredCapacity(ctx context.Context, groupName string, desired int) error {
	_, err := g.as.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(groupName),
		DesiredCapacity:      aws.Int32(int32(desired)),
		HonorCooldown:        aws.Bool(false),
	})
	if err != nil {
		return fmt.Errorf("setting desired capacity of %s to %d: %w", groupName, desired, err)
	}
	return nil
}

// TerminateInstance terminates one instance through its group, decrementing the desired
// capacity so no replacement is launched; the group's terminate lifecycle hook (the drain)
// still runs before the instance goes.
func (g *Groups) TerminateInstance(ctx context.Context, instanceID string) error {
	return g.terminate(ctx, instanceID, true)
}

// ReplaceInstance terminates one instance through its group without decrementing the desired
// capacity, so the group launches its replacement at once; the terminate hook still runs first.
func (g *Groups) ReplaceInstance(ctx context.Context, instanceID string) error {
	return g.terminate(ctx, instanceID, false)
}

func (g *Groups) terminate(ctx context.Context, instanceID string, decrement bool) error {
	_, err := g.as.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId:                     aws.String(instanceID),
		ShouldDecrementDesiredCapacity: aws.Bool(decrement),
	})
	if err != nil {
		return fmt.Errorf("terminating %s through its auto scaling group (decrement %v): %w", instanceID, decrement, err)
	}
	return nil
}
