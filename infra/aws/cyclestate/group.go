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

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/aws/asg"
)

// AutoScalingAPI is the part of the Auto Scaling client Group calls: asg.GroupsAPI and changing
// the group's max size.
type AutoScalingAPI interface {
	asg.GroupsAPI
	UpdateAutoScalingGroup(ctx context.Context, in *autoscaling.UpdateAutoScalingGroupInput, optFns ...func(*autoscaling.Options)) (*autoscaling.UpdateAutoScalingGroupOutput, error)
}

// EC2API is the part of the EC2 client Group calls: asg.EC2API and reading launch templates.
type EC2API interface {
	asg.EC2API
	DescribeLaunchTemplates(ctx context.Context, in *ec2.DescribeLaunchTemplatesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error)
}

// Group implements cycle.Group over asg.Groups (which describes the group and its instances,
// sets its desired capacity and terminates through it), adding what only a cycle does: resolving
// the launch template and version a launch uses, and raising and restoring the max size. It is
// safe for concurrent use.
//
// Its Describe says whose failure a failed look is. Auto Scaling's or EC2's refusal to answer
// (throttled, access denied, a 5xx, the caller's deadline) is the worker's: Describe's error is
// then a *cycle.WorkerError, and a failed DescribeInstances (the members' addresses and launch
// times) does not fail Describe at all but is GroupState.AddressErr. A group that does not exist
// wraps cycle.ErrGroupNotFound.
type Group struct {
	groups *asg.Groups
	as     AutoScalingAPI
	ec2    EC2API
}

var _ cycle.Group = (*Group)(nil)

// NewGroup returns a Group; it refuses nil clients.
func NewGroup(as AutoScalingAPI, ec2api EC2API) (*Group, error) {
	groups, err := asg.NewGroups(as, ec2api)
	if err != nil {
		return nil, fmt.Errorf("cyclestate: %w", err)
	}
	return &Group{groups: groups, as: as, ec2: ec2api}, nil
}

// Describe returns the group's capacity, the launch template a launch uses now — its id (looked
// up with DescribeLaunchTemplates when the group names it by name) and its version ("$Latest" and
// "$Default" resolved the same way) — and its members with the launch template id and version
// each was launched from, its private IP and launch time (from EC2). For a group with a mixed
// instances policy, that policy's launch template is the one a launch uses (asg.Snapshot). A
// missing group wraps cycle.ErrGroupNotFound; any other failure is the worker's (see Group).
func (g *Group) Describe(ctx context.Context, groupName string) (cycle.GroupState, error) {
	s, ec2Err, err := g.groups.ReadGroup(ctx, groupName, cycle.ErrGroupNotFound)
	if errors.Is(err, cycle.ErrGroupNotFound) {
		return cycle.GroupState{}, err
	}
	if err != nil {
		return cycle.GroupState{}, rfaws.WorkerFailure(ctx, err)
	}
	st := cycle.GroupState{Name: s.Name, Desired: s.Desired, Min: s.Min, Max: s.Max}
	if ec2Err != nil {
		st.AddressErr = rfaws.WorkerFailure(ctx, ec2Err)
	}
	if s.LaunchTemplate != nil {
		if st.CurrentTemplate, st.CurrentVersion, err = g.resolve(ctx, s.LaunchTemplate); err != nil {
			return cycle.GroupState{}, rfaws.WorkerFailure(ctx, fmt.Errorf("resolving the launch template of group %s: %w", groupName, err))
		}
	}
	for _, m := range s.Members {
		st.Members = append(st.Members, cycle.Member{ID: m.Instance.ID, State: m.Instance.State,
			Template: m.Instance.LaunchTemplateID, Version: m.Instance.LaunchTemplateVersion,
			LaunchedAt: m.Instance.LaunchedAt, PrivateIP: m.PrivateIP, Protected: m.Instance.Protected})
	}
	return st, nil
}

// resolve turns a launch template specification into the template's id and a version number.
// A specification that names its template by id and its version by number needs no call.
func (g *Group) resolve(ctx context.Context, spec *astypes.LaunchTemplateSpecification) (id, version string, err error) {
	id, v := aws.ToString(spec.LaunchTemplateId), aws.ToString(spec.Version)
	if _, err := strconv.Atoi(v); err == nil && id != "" {
		return id, v, nil
	}
	in := &ec2.DescribeLaunchTemplatesInput{}
	if id != "" {
		in.LaunchTemplateIds = []string{id}
	} else {
		in.LaunchTemplateNames = []string{aws.ToString(spec.LaunchTemplateName)}
	}
	out, err := g.ec2.DescribeLaunchTemplates(ctx, in)
	if err != nil {
		return "", "", err
	}
	if len(out.LaunchTemplates) != 1 {
		return "", "", fmt.Errorf("%d launch templates match %s%s", len(out.LaunchTemplates), aws.ToString(spec.LaunchTemplateId), aws.ToString(spec.LaunchTemplateName))
	}
	lt := out.LaunchTemplates[0]
	if id = aws.ToString(lt.LaunchTemplateId); id == "" {
		return "", "", fmt.Errorf("launch template %s%s: no id in EC2's answer", aws.ToString(spec.LaunchTemplateId), aws.ToString(spec.LaunchTemplateName))
	}
	switch {
	case v == "$Latest":
		v = strconv.FormatInt(aws.ToInt64(lt.LatestVersionNumber), 10)
	case v == "$Default" || v == "":
		v = strconv.FormatInt(aws.ToInt64(lt.DefaultVersionNumber), 10)
	}
	return id, v, nil
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
	return g.groups.SetDesiredCapacity(ctx, groupName, desired)
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
	return g.groups.TerminateInstance(ctx, instanceID)
}

// ReplaceInstance terminates one instance through its group without decrementing the desired
// capacity (the group launches its replacement); the terminate hook (the drain) runs first.
func (g *Group) ReplaceInstance(ctx context.Context, instanceID string) error {
	return g.groups.ReplaceInstance(ctx, instanceID)
}
