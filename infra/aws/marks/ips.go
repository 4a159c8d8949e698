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

// IPs implements Addresses with EC2 DescribeInstances (an instance-id filter, so an instance
// already gone is "not found" rather than a failed call).
type IPs struct{ API EC2API }

// PrivateIP returns the instance's private IPv4 address.
func (p IPs) PrivateIP(ctx context.Context, id string) (string, error) {
	if p.API == nil {
		return "", errors.New("marks: nil ec2 client")
	}
	out, err := p.API.DescribeInstances(ctx, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}},
	})
	if err != nil {
		return "", fmt.Errorf("describing instance %s: %w", id, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) == id && aws.ToString(in.PrivateIpAddress) != "" {
				return aws.ToString(in.PrivateIpAddress), nil
			}
		}
	}
	return "", fmt.Errorf("instance %s has no private address (gone?)", id)
}

// Owners implements interrupt.Owners with EC2 DescribeInstances: the instance's
// aws:autoscaling:groupName tag, which EC2 keeps on a stopping or terminated instance.
type Owners struct{ API EC2API }

// GroupTag returns the group the instance was launched by; found is false when EC2 does not know
// the instance or it has no group tag.
func (o Owners) GroupTag(ctx context.Context, id string) (string, bool, error) {
	if o.API == nil {
		return "", false, errors.New("marks: nil ec2 client")
	}
	out, err := o.API.DescribeInstances(ctx, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}},
	})
	if err != nil {
		return "", false, fmt.Errorf("describing instance %s: %w", id, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) != id {
				continue
			}
			for _, t := range in.Tags {
				if aws.ToString(t.Key) == "aws:autoscaling:groupName" {
					return aws.ToString(t.Value), true, nil
				}
			}
		}
	}
	return "", false, nil
}
