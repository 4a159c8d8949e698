package cyclestate

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/cycle"
)

// filterBatch is EC2's limit of values in one filter.
const filterBatch = 200

// AutoScalingAPI is the part of the Auto Scaling client Group calls.
type AutoScalingAPI interface {
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
	SetDesiredCapacity(ctx context.Context, in *autoscaling.SetDesiredCapacityInput, optFns ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error)
	UpdateAutoScalingGroup(ctx context.Context, in *autoscaling.UpdateAutoScalingGroupInput, optFns ...func(*autoscaling.Options)) (*autoscaling.UpdateAutoScalingGroupOutput, error)
	TerminateInstanceInAutoScalingGroup(ctx context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, optFns ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error)
}

// EC2API is the part of the EC2 client Group calls.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	DescribeLaunchTemplates(ctx context.Context, in *ec2.DescribeLaunchTemplatesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error)
}

// Group implements cycle.Group over the Auto Scaling and EC2 APIs. It is safe for concurrent use.
type Group struct {
	as  AutoScalingAPI
	ec2 EC2API
}

var _ cycle.Group = (*Group)(nil)

// NewGroup returns a Group; it refuses nil clients.
func NewGroup(as AutoScalingAPI, ec2api EC2API) (*Group, error) {
	var errs []error
	if as == nil {
		errs = append(errs, errors.New("cyclestate: nil autoscaling client"))
	}
	if ec2api == nil {
		errs = append(errs, errors.New("cyclestate: nil ec2 client"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Group{as: as, ec2: ec2api}, nil
}

// Describe returns the group's capacity, the launch template version a launch uses now
// ("$Latest" and "$Default" resolved with DescribeLaunchTemplates), and its members with the
// version each was launched from, its private IP and launch time (from EC2). A missing group
// wraps cycle.ErrGroupNotFound.
func (g *Group) Describe(ctx context.Context, groupName string) (cycle.GroupState, error) {
	out, err := g.as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{groupName}})
	if err != nil {
		return cycle.GroupState{}, fmt.Errorf("describing auto scaling group %s: %w", groupName, err)
	}
	var grp *astypes.AutoScalingGroup
	for i := range out.AutoScalingGroups {
		if aws.ToString(out.AutoScalingGroups[i].AutoScalingGroupName) == groupName {
			grp = &out.AutoScalingGroups[i]
		}
	}
	if grp == nil {
		return cycle.GroupState{}, fmt.Errorf("describing auto scaling group %s: %w", groupName, cycle.ErrGroupNotFound)
	}
	st := cycle.GroupState{Name: groupName, Desired: int(aws.ToInt32(grp.DesiredCapacity)),
		Min: int(aws.ToInt32(grp.MinSize)), Max: int(aws.ToInt32(grp.MaxSize))}
	spec := grp.LaunchTemplate
	if spec == nil && grp.MixedInstancesPolicy != nil && grp.MixedInstancesPolicy.LaunchTemplate != nil {
		spec = grp.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification
	}
	if spec != nil {
		if st.CurrentVersion, err = g.resolve(ctx, spec); err != nil {
			return cycle.GroupState{}, fmt.Errorf("resolving the launch template version of group %s: %w", groupName, err)
		}
	}
	ids := make([]string, 0, len(grp.Instances))
	for _, in := range grp.Instances {
		m := cycle.Member{ID: aws.ToString(in.InstanceId), State: fleet.LifecycleState(in.LifecycleState), Protected: aws.ToBool(in.ProtectedFromScaleIn)}
		if in.LaunchTemplate != nil {
			m.Version = aws.ToString(in.LaunchTemplate.Version)
		}
		st.Members = append(st.Members, m)
		ids = append(ids, m.ID)
	}
	if err := g.details(ctx, st.Members, ids); err != nil {
		return cycle.GroupState{}, fmt.Errorf("describing instances of auto scaling group %s: %w", groupName, err)
	}
	return st, nil
}

// resolve turns a launch template specification into a version number.
func (g *Group) resolve(ctx context.Context, spec *astypes.LaunchTemplateSpecification) (string, error) {
	v := aws.ToString(spec.Version)
	if _, err := strconv.Atoi(v); err == nil {
		return v, nil
	}
	in := &ec2.DescribeLaunchTemplatesInput{}
	if id := aws.ToString(spec.LaunchTemplateId); id != "" {
		in.LaunchTemplateIds = []string{id}
	} else {
		in.LaunchTemplateNames = []string{aws.ToString(spec.LaunchTemplateName)}
	}
	out, err := g.ec2.DescribeLaunchTemplates(ctx, in)
	if err != nil {
		return "", err
	}
	if len(out.LaunchTemplates) != 1 {
		return "", fmt.Errorf("%d launch templates match %s%s", len(out.LaunchTemplates), aws.ToString(spec.LaunchTemplateId), aws.ToString(spec.LaunchTemplateName))
	}
	lt := out.LaunchTemplates[0]
	if v == "$Latest" {
		return strconv.FormatInt(aws.ToInt64(lt.LatestVersionNumber), 10), nil
	}
	return strconv.FormatInt(aws.ToInt64(lt.DefaultVersionNumber), 10), nil // "$Default" or empty
}

// details fills private IPs and launch times with an instance-id filter (unlike InstanceIds, a
// filter does not fail for an instance already gone).
func (g *Group) details(ctx context.Context, members []cycle.Member, ids []string) error {
	found := map[string]ec2types.Instance{}
	for start := 0; start < len(ids); start += filterBatch {
		chunk := ids[start:min(start+filterBatch, len(ids))]
		p := ec2.NewDescribeInstancesPaginator(g.ec2, &ec2.DescribeInstancesInput{
			Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: chunk}},
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, r := range page.Reservations {
				for _, in := range r.Instances {
					found[aws.ToString(in.InstanceId)] = in
				}
			}
		}
	}
	for i := range members {
		if in, ok := found[members[i].ID]; ok {
			members[i].PrivateIP = aws.ToString(in.PrivateIpAddress)
			members[i].LaunchedAt = aws.ToTime(in.LaunchTime)
		}
	}
	return nil
}

// SetCapacity raises MaxSize to max first when needed, then sets the desired capacity at once.
func (g *Group) SetCapacity(ctx context.Context, groupName string, desired, max int) error {
	if max > 0 {
		out, err := g.as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{groupName}})
		if err != nil {
			return fmt.Errorf("describing auto scaling group %s: %w", groupName, err)
		}
		if len(out.AutoScalingGroups) == 1 && int(aws.ToInt32(out.AutoScalingGroups[0].MaxSize)) < max {
			if _, err := g.as.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
				AutoScalingGroupName: aws.String(groupName), MaxSize: aws.Int32(int32(max)),
			}); err != nil {
				return fmt.Errorf("raising the max size of %s to %d for a cycle's surge: %w", groupName, max, err)
			}
		}
	}
	if _, err := g.as.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(groupName), DesiredCapacity: aws.Int32(int32(desired)), HonorCooldown: aws.Bool(false),
	}); err != nil {
		return fmt.Errorf("setting desired capacity of %s to %d: %w", groupName, desired, err)
	}
	return nil
}

// RestoreMax sets MaxSize back to max, never below the desired capacity.
func (g *Group) RestoreMax(ctx context.Context, groupName string, max int) error {
	out, err := g.as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{groupName}})
	if err != nil {
		return fmt.Errorf("describing auto scaling group %s: %w", groupName, err)
	}
	if len(out.AutoScalingGroups) != 1 {
		return fmt.Errorf("restoring the max size of %s: %w", groupName, cycle.ErrGroupNotFound)
	}
	max = maxInt(max, int(aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity)))
	if _, err := g.as.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(groupName), MaxSize: aws.Int32(int32(max)),
	}); err != nil {
		return fmt.Errorf("restoring the max size of %s to %d: %w", groupName, max, err)
	}
	return nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// TerminateInstance terminates one instance through its group, decrementing the desired
// capacity; the group's terminate lifecycle hook (the drain) runs first.
func (g *Group) TerminateInstance(ctx context.Context, instanceID string) error {
	if _, err := g.as.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(instanceID), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		return fmt.Errorf("terminating %s through its auto scaling group: %w", instanceID, err)
	}
	return nil
}
