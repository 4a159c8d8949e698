// Package deploy creates RunnerFleet's stacks — the worker's (deploy/ecs/worker.yaml) and runner
// fleets' (deploy/runner/runner.yaml) — through CloudFormation in the local AWS emulator, for the
// integration tests and the demo. Its test asserts the resources that result.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// stackWait bounds how long a create or update may take: the emulator needs seconds.
const stackWait = 2 * time.Minute

// Network is where stacks go in the emulator: its default VPC, two of its subnets, an image and
// the VPC's default security group (a stand-in for the worker's when no worker stack exists).
type Network struct {
	VpcID           string
	SubnetIDs       []string
	ImageID         string
	SecurityGroupID string
}

// EC2API is the part of the EC2 client Discover calls.
type EC2API interface {
	DescribeVpcs(ctx context.Context, in *ec2.DescribeVpcsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeVpcsOutput, error)
	DescribeSubnets(ctx context.Context, in *ec2.DescribeSubnetsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
	DescribeImages(ctx context.Context, in *ec2.DescribeImagesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
	DescribeSecurityGroups(ctx context.Context, in *ec2.DescribeSecurityGroupsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error)
}

// Discover finds the emulator's default network and an image.
func Discover(ctx context.Context, api EC2API) (Network, error) {
	var n Network
	vpcs, err := api.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{
		Filters: []ec2types.Filter{{Name: aws.String("is-default"), Values: []string{"true"}}},
	})
	if err != nil {
		return n, fmt.Errorf("describing the default vpc: %w", err)
	}
	if len(vpcs.Vpcs) == 0 {
		return n, errors.New("no default vpc")
	}
	n.VpcID = aws.ToString(vpcs.Vpcs[0].VpcId)
	vpcFilter := []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{n.VpcID}}}
	sn, err := api.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: vpcFilter})
	if err != nil {
		return n, fmt.Errorf("describing subnets of %s: %w", n.VpcID, err)
	}
	for _, s := range sn.Subnets {
		if len(n.SubnetIDs) < 2 {
			n.SubnetIDs = append(n.SubnetIDs, aws.ToString(s.SubnetId))
		}
	}
	if len(n.SubnetIDs) == 0 {
		return n, fmt.Errorf("no subnet in %s", n.VpcID)
	}
	images, err := api.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil {
		return n, fmt.Errorf("describing images: %w", err)
	}
	if len(images.Images) == 0 {
		return n, errors.New("no image")
	}
	n.ImageID = aws.ToString(images.Images[0].ImageId)
	sgs, err := api.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{
		Filters: append(vpcFilter, ec2types.Filter{Name: aws.String("group-name"), Values: []string{"default"}}),
	})
	if err != nil {
		return n, fmt.Errorf("describing the default security group: %w", err)
	}
	if len(sgs.SecurityGroups) == 0 {
		return n, fmt.Errorf("no default security group in %s", n.VpcID)
	}
	n.SecurityGroupID = aws.ToString(sgs.SecurityGroups[0].GroupId)
	return n, nil
}

// Fleet describes a runner fleet stack in the local world.
type Fleet struct {
	// Stack is the stack name; the group is runnerfleet-<Stack> (runner.NamesFor).
	Stack string
	// Name is the fleet's name in the worker config (FleetName, the FIFO message group).
	Name string
	// ControlQueueArn is the worker's control queue (a worker stack's output, or a queue of the test).
	ControlQueueArn string
	// WorkerSecurityGroupID defaults to the network's default security group.
	WorkerSecurityGroupID string
	// InstanceRoleBoundaryArn is the worker stack's output of that name (empty: no boundary).
	InstanceRoleBoundaryArn string
	// TokenParameter is the SecureString's name (the template never takes the value).
	TokenParameter string
	// Min, Max and Desired size the group (Min defaults to 1, Max to 10; Desired 0 leaves it to Min).
	Min, Max, Desired int
	// HeartbeatTimeout is the terminate hook's (default: the template's 1800 s). The emulator
	// accepts values below AWS's 30 s minimum, for short real timeouts in tests.
	HeartbeatTimeout time.Duration
	// LaunchHook adds the launch hook with LaunchHookTimeout (default: the template's 900 s).
	LaunchHook        bool
	LaunchHookTimeout time.Duration
}

// Parameters returns the runner template's parameters for f in network n.
func (f Fleet) Parameters(n Network) map[string]string {
	sg := f.WorkerSecurityGroupID
	if sg == "" {
		sg = n.SecurityGroupID
	}
	p := map[string]string{
		"FleetName": f.Name, "ControlQueueArn": f.ControlQueueArn, "WorkerSecurityGroupId": sg,
		"VpcID": n.VpcID, "SubnetIds": strings.Join(n.SubnetIDs, ","), "ImageId": n.ImageID,
		"TokenParameterName": f.TokenParameter,
		// The boot script never runs here; the template requires well-formed checksums.
		"RunnerSha256Amd64": strings.Repeat("0", 64), "RunnerSha256Arm64": strings.Repeat("0", 64),
		"LaunchHook": strconv.FormatBool(f.LaunchHook), "InstanceRoleBoundaryArn": f.InstanceRoleBoundaryArn,
	}
	if f.Min > 0 {
		p["MinSize"] = strconv.Itoa(f.Min)
	}
	if f.Max > 0 {
		p["MaxSize"] = strconv.Itoa(f.Max)
	}
	if f.Desired > 0 {
		p["DesiredCapacity"] = strconv.Itoa(f.Desired)
	}
	if f.HeartbeatTimeout > 0 {
		p["HeartbeatTimeout"] = strconv.Itoa(int(f.HeartbeatTimeout / time.Second))
	}
	if f.LaunchHookTimeout > 0 {
		p["LaunchHookTimeout"] = strconv.Itoa(int(f.LaunchHookTimeout / time.Second))
	}
	return p
}

// WorkerParameters returns the worker template's parameters in network n, with config as the
// worker's YAML config.
func WorkerParameters(n Network, config string) map[string]string {
	return map[string]string{
		"VpcId": n.VpcID, "SubnetIds": strings.Join(n.SubnetIDs, ","),
		"Image": "registry.example/runnerfleet:dev", "WorkerConfig": config,
	}
}

// WorkerTemplate reads deploy/ecs/worker.yaml from the repository.
func WorkerTemplate() (string, error) {
	root, err := emulator.RepoRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "ecs", "worker.yaml"))
	if err != nil {
		return "", fmt.Errorf("reading the worker template: %w", err)
	}
	return string(b), nil
}

// CloudFormationAPI is the part of the CloudFormation client CreateStack and UpdateStack call.
type CloudFormationAPI interface {
	CreateStack(ctx context.Context, in *cloudformation.CreateStackInput, optFns ...func(*cloudformation.Options)) (*cloudformation.CreateStackOutput, error)
	UpdateStack(ctx context.Context, in *cloudformation.UpdateStackInput, optFns ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error)
	DescribeStacks(ctx context.Context, in *cloudformation.DescribeStacksInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
}

// CreateStack creates a stack from body with params, waits for CREATE_COMPLETE and returns its
// outputs.
func CreateStack(ctx context.Context, api CloudFormationAPI, name, body string, params map[string]string) (map[string]string, error) {
	if _, err := api.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(name), TemplateBody: aws.String(body), Parameters: parameters(params),
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam},
	}); err != nil {
		return nil, fmt.Errorf("creating stack %s: %w", name, err)
	}
	w := cloudformation.NewStackCreateCompleteWaiter(api, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 200*time.Millisecond, 2*time.Second
	})
	out, err := w.WaitForOutput(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)}, stackWait)
	if err != nil {
		return nil, fmt.Errorf("waiting for stack %s: %w", name, err)
	}
	return outputs(out), nil
}

// UpdateStack updates a stack with the template it has, changing params and keeping every other
// parameter of keep at its previous value; it waits for UPDATE_COMPLETE and returns the outputs.
func UpdateStack(ctx context.Context, api CloudFormationAPI, name string, params map[string]string, keep []string) (map[string]string, error) {
	ps := parameters(params)
	for _, k := range keep {
		if _, ok := params[k]; !ok {
			ps = append(ps, cfntypes.Parameter{ParameterKey: aws.String(k), UsePreviousValue: aws.Bool(true)})
		}
	}
	if _, err := api.UpdateStack(ctx, &cloudformation.UpdateStackInput{
		StackName: aws.String(name), UsePreviousTemplate: aws.Bool(true), Parameters: ps,
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam},
	}); err != nil {
		return nil, fmt.Errorf("updating stack %s: %w", name, err)
	}
	w := cloudformation.NewStackUpdateCompleteWaiter(api, func(o *cloudformation.StackUpdateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 200*time.Millisecond, 2*time.Second
	})
	out, err := w.WaitForOutput(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)}, stackWait)
	if err != nil {
		return nil, fmt.Errorf("waiting for stack %s: %w", name, err)
	}
	return outputs(out), nil
}

func parameters(params map[string]string) []cfntypes.Parameter {
	ps := make([]cfntypes.Parameter, 0, len(params))
	for k, v := range params {
		ps = append(ps, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
	}
	return ps
}

func outputs(out *cloudformation.DescribeStacksOutput) map[string]string {
	m := map[string]string{}
	if len(out.Stacks) == 0 {
		return m
	}
	for _, o := range out.Stacks[0].Outputs {
		m[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	return m
}
