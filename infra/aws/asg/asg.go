// Package asg is the Auto Scaling adapter of the scale handler: it describes a fleet's group with
// its instances' private addresses and launch times (from EC2), raises the desired capacity,
// sets scale-in protection and terminates chosen instances through the group.
package asg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
)

// API limits the calls are chunked by.
const (
	// protectionBatch is SetInstanceProtection's limit of instance IDs per call.
	protectionBatch = 50
	// filterBatch is EC2's limit of values in one filter.
	filterBatch = 200
)

// AutoScalingAPI is the part of the Auto Scaling client the adapter calls.
type AutoScalingAPI interface {
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
	SetDesiredCapacity(ctx context.Context, in *autoscaling.SetDesiredCapacityInput, optFns ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error)
	SetInstanceProtection(ctx context.Context, in *autoscaling.SetInstanceProtectionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error)
	TerminateInstanceInAutoScalingGroup(ctx context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, optFns ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error)
}

// EC2API is the part of the EC2 client the adapter calls.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// Group implements scale.Group over the Auto Scaling and EC2 APIs. It is safe for concurrent use.
type Group struct {
	as  AutoScalingAPI
	ec2 EC2API
}

var _ scale.Group = (*Group)(nil)

// New returns a Group; it refuses nil clients.
func New(as AutoScalingAPI, ec2api EC2API) (*Group, error) {
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
	return &Group{as: as, ec2: ec2api}, nil
}

// Describe returns the group's desired, min and max capacity and its instances, with each one's
// lifecycle state, scale-in protection, launch template version, and from EC2 its private IP and
// launch time. An instance EC2 no longer lists keeps an empty IP (it is not scraped: its
// runner's URL would be wrong). A missing group wraps scale.ErrGroupNotFound.
func (g *Group) Describe(ctx context.Context, groupName string) (scale.GroupState, error) {
	out, err := g.as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{groupName},
	})
	if err != nil {
		return scale.GroupState{}, fmt.Errorf("describing auto scaling group %s: %w", groupName, err)
	}
	var grp *astypes.AutoScalingGroup
	for i := range out.AutoScalingGroups {
		if aws.ToString(out.AutoScalingGroups[i].AutoScalingGroupName) == groupName {
			grp = &out.AutoScalingGroups[i]
		}
	}
	if grp == nil {
		return scale.GroupState{}, fmt.Errorf("describing auto scaling group %s: %w", groupName, scale.ErrGroupNotFound)
	}
	st := scale.GroupState{
		Name:    groupName,
		Desired: int(aws.ToInt32(grp.DesiredCapacity)),
		Min:     int(aws.ToInt32(grp.MinSize)),
		Max:     int(aws.ToInt32(grp.MaxSize)),
	}
	ids := make([]string, 0, len(grp.Instances))
	for _, in := range grp.Instances {
		inst := fleet.Instance{
			ID:        aws.ToString(in.InstanceId),
			State:     fleet.LifecycleState(in.LifecycleState),
			Protected: aws.ToBool(in.ProtectedFromScaleIn),
		}
		if in.LaunchTemplate != nil {
			inst.LaunchTemplateVersion = aws.ToString(in.LaunchTemplate.Version)
		}
		st.Members = append(st.Members, scale.Member{Instance: inst})
		ids = append(ids, inst.ID)
	}
	details, err := g.instances(ctx, ids)
	if err != nil {
		return scale.GroupState{}, fmt.Errorf("describing instances of auto scaling group %s: %w", groupName, err)
	}
	for i := range st.Members {
		if d, ok := details[st.Members[i].Instance.ID]; ok {
			st.Members[i].PrivateIP = d.ip
			st.Members[i].Instance.LaunchedAt = d.launched
		}
	}
	return st, nil
}

type detail struct {
	ip       string
	launched time.Time
}

// instances reads private IPs and launch times with an instance-id filter: unlike InstanceIds, a
// filter does not fail the whole call for one instance that is already gone.
func (g *Group) instances(ctx context.Context, ids []string) (map[string]detail, error) {
	out := make(map[string]detail, len(ids))
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
					out[aws.ToString(in.InstanceId)] = detail{ip: aws.ToString(in.PrivateIpAddress), launched: aws.ToTime(in.LaunchTime)}
				}
			}
		}
	}
	return out, nil
}

// SetDesiredCapacity sets the group's desired capacity at once, ignoring cooldowns: the policy
// has its own stabilization.
func (g *Group) SetDesiredCapacity(ctx context.Context, groupName string, desired int) error {
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

// SetProtection sets or clears scale-in protection, 50 instances per call.
func (g *Group) SetProtection(ctx context.Context, groupName string, ids []string, protected bool) error {
	for start := 0; start < len(ids); start += protectionBatch {
		chunk := ids[start:min(start+protectionBatch, len(ids))]
		_, err := g.as.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
			AutoScalingGroupName: aws.String(groupName),
			InstanceIds:          chunk,
			ProtectedFromScaleIn: aws.Bool(protected),
		})
		if err != nil {
			return fmt.Errorf("setting scale-in protection %v of %d instances of %s: %w", protected, len(chunk), groupName, err)
		}
	}
	return nil
}

// TerminateInstance terminates one instance through its group, decrementing the desired
// capacity so no replacement is launched; the group's terminate lifecycle hook still runs.
func (g *Group) TerminateInstance(ctx context.Context, instanceID string) error {
	_, err := g.as.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId:                     aws.String(instanceID),
		ShouldDecrementDesiredCapacity: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("terminating %s through its auto scaling group: %w", instanceID, err)
	}
	return nil
}
