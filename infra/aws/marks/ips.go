package marks

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// EC2API is the part of the EC2 client IPs calls.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// ErrNoAddress is wrapped by the error of an address lookup that worked and found no address:
// EC2 does not know the instance (any more), or it has no private address. That is the
// instance's state, not a failure of the lookup.
var ErrNoAddress = errors.New("no private address")

// IPs implements Addresses with EC2 DescribeInstances (an instance-id filter, so an instance
// already gone is "not found" rather than a failed call).
type IPs struct{ API EC2API }

// PrivateIP returns the instance's private IPv4 address. An instance EC2 does not know, or
// without one, is an error wrapping ErrNoAddress; a failed DescribeInstances is its error, wrapped.
func (p IPs) PrivateIP(ctx context.Context, id string) (string, error) {
	in, err := describeOne(ctx, p.API, id)
	if err != nil {
		return "", err
	}
	if in == nil || aws.ToString(in.PrivateIpAddress) == "" {
		return "", fmt.Errorf("instance %s: %w (gone?)", id, ErrNoAddress)
	}
	return aws.ToString(in.PrivateIpAddress), nil
}

// describeOne describes one instance by an instance-id filter, so an instance EC2 no longer
// knows is nil rather than a failed call.
func describeOne(ctx context.Context, api EC2API, id string) (*ec2types.Instance, error) {
	if api == nil {
		return nil, errors.New("marks: nil ec2 client")
	}
	out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}},
	})
	if err != nil {
		return nil, fmt.Errorf("describing instance %s: %w", id, err)
	}
	for _, r := range out.Reservations {
		for i := range r.Instances {
			if aws.ToString(r.Instances[i].InstanceId) == id {
				return &r.Instances[i], nil
			}
		}
	}
	return nil, nil
}

// Owners implements interrupt.Owners with EC2 DescribeInstances: the instance's
// aws:autoscaling:groupName tag, which EC2 keeps on a stopping or terminated instance.
type Owners struct{ API EC2API }

// GroupTag returns the group the instance was launched by; found is false when EC2 does not know
// the instance or it has no group tag.
func (o Owners) GroupTag(ctx context.Context, id string) (string, bool, error) {
	in, err := describeOne(ctx, o.API, id)
	if err != nil || in == nil {
		return "", false, err
	}
	for _, t := range in.Tags {
		if aws.ToString(t.Key) == "aws:autoscaling:groupName" {
			return aws.ToString(t.Value), true, nil
		}
	}
	return "", false, nil
}
