package asg_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/asg"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// The adapter against the emulator's Auto Scaling and EC2.
func TestGroupAgainstEmulator(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	ctx := context.Background()
	cfg := e.AWSConfig(t)
	asc, ec2c := autoscaling.NewFromConfig(cfg), ec2.NewFromConfig(cfg)

	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := ec2c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatal(err)
	}
	name := emulator.UniqueName(t, "runnerfleet-asg")
	if _, err := asc.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(6), DesiredCapacity: aws.Int32(2),
		AvailabilityZones: []string{"us-east-1a"},
	}); err != nil {
		t.Fatal(err)
	}

	g, err := asg.New(asc, ec2c)
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Describe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Desired != 2 || st.Min != 0 || st.Max != 6 || len(st.Members) != 2 {
		t.Fatalf("described %+v", st)
	}
	for _, m := range st.Members {
		if m.PrivateIP == "" || m.Instance.LaunchedAt.IsZero() || m.Instance.ID == "" || m.Instance.State == "" {
			t.Errorf("member lacks EC2 details: %+v", m)
		}
	}

	victim, keeper := st.Members[0].Instance.ID, st.Members[1].Instance.ID
	if err := g.SetProtection(ctx, name, []string{keeper}, true); err != nil {
		t.Fatal(err)
	}
	if err := g.SetDesiredCapacity(ctx, name, 3); err != nil {
		t.Fatal(err)
	}
	if err := g.TerminateInstance(ctx, victim); err != nil {
		t.Fatal(err)
	}
	st, err = g.Describe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Desired != 2 {
		t.Errorf("desired = %d after raising to 3 and terminating one with decrement, want 2", st.Desired)
	}
	i := slices.IndexFunc(st.Members, func(m scale.Member) bool { return m.Instance.ID == keeper })
	if i < 0 || !st.Members[i].Instance.Protected {
		t.Errorf("protected instance %s lost its protection or left: %+v", keeper, st.Members)
	}
	for _, m := range st.Members {
		if m.Instance.ID == victim && !m.Instance.State.Leaving() {
			t.Errorf("terminated instance %s still %s", victim, m.Instance.State)
		}
	}

	if _, err := g.Describe(ctx, "runnerfleet-no-such-group"); !errors.Is(err, scale.ErrGroupNotFound) {
		t.Errorf("missing group: err %v, want ErrGroupNotFound", err)
	}
	if _, err := asg.New(nil, nil); err == nil {
		t.Error("nil clients accepted")
	}
}

// recorder is a race-safe fake of the Auto Scaling and EC2 calls: it serves one group and
// records every change asked of it.
type recorder struct {
	mu        sync.Mutex
	group     astypes.AutoScalingGroup
	gone      map[string]bool // instances EC2 no longer lists
	filters   [][]string      // instance-id filter values, one entry per DescribeInstances
	protected [][]string      // instance IDs, one entry per SetInstanceProtection accepted
	leaving   map[string]bool // instances no longer InService: a call naming one is refused whole
	calls     []string
	ec2Err    error // fails DescribeInstances
}

func (r *recorder) DescribeAutoScalingGroups(_ context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	out := &autoscaling.DescribeAutoScalingGroupsOutput{}
	if in.AutoScalingGroupNames[0] == aws.ToString(r.group.AutoScalingGroupName) {
		out.AutoScalingGroups = []astypes.AutoScalingGroup{r.group}
	}
	return out, nil
}

func (r *recorder) SetDesiredCapacity(_ context.Context, in *autoscaling.SetDesiredCapacityInput, _ ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error) {
	r.record(fmt.Sprintf("desired %s %d cooldown=%v", aws.ToString(in.AutoScalingGroupName), aws.ToInt32(in.DesiredCapacity), aws.ToBool(in.HonorCooldown)))
	return &autoscaling.SetDesiredCapacityOutput{}, nil
}

func (r *recorder) SetInstanceProtection(_ context.Context, in *autoscaling.SetInstanceProtectionInput, _ ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error) {
	r.record(fmt.Sprintf("protect %s %v", aws.ToString(in.AutoScalingGroupName), aws.ToBool(in.ProtectedFromScaleIn)))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range in.InstanceIds {
		if r.leaving[id] {
			return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: "The instance " + id + " is not in InService or EnteringStandby or Standby."}
		}
	}
	r.protected = append(r.protected, in.InstanceIds)
	return &autoscaling.SetInstanceProtectionOutput{}, nil
}

func (r *recorder) TerminateInstanceInAutoScalingGroup(_ context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, _ ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error) {
	r.record(fmt.Sprintf("terminate %s decrement=%v", aws.ToString(in.InstanceId), aws.ToBool(in.ShouldDecrementDesiredCapacity)))
	return &autoscaling.TerminateInstanceInAutoScalingGroupOutput{}, nil
}

func (r *recorder) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ec2Err != nil {
		return nil, r.ec2Err
	}
	ids := in.Filters[0].Values
	r.filters = append(r.filters, ids)
	var res ec2types.Reservation
	for _, id := range ids {
		if !r.gone[id] {
			res.Instances = append(res.Instances, ec2types.Instance{InstanceId: aws.String(id),
				PrivateIpAddress: aws.String("10.1.0." + id[2:]), LaunchTime: aws.Time(time.Unix(700, 0))})
		}
	}
	return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{res}}, nil
}

func (r *recorder) record(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call)
}

// fleetOf returns a recorder serving group "grp" of n instances i-0 … i-(n-1), launched from a
// mixed instances policy's launch template.
func fleetOf(n int) *recorder {
	r := &recorder{gone: map[string]bool{"i-1": true}, group: astypes.AutoScalingGroup{
		AutoScalingGroupName: aws.String("grp"), DesiredCapacity: aws.Int32(int32(n)), MinSize: aws.Int32(1), MaxSize: aws.Int32(500),
		MixedInstancesPolicy: &astypes.MixedInstancesPolicy{LaunchTemplate: &astypes.LaunchTemplate{
			LaunchTemplateSpecification: &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String("$Latest")}}},
	}}
	for i := range n {
		r.group.Instances = append(r.group.Instances, astypes.Instance{InstanceId: aws.String(fmt.Sprintf("i-%d", i)),
			LifecycleState: astypes.LifecycleStateInService, ProtectedFromScaleIn: aws.Bool(i == 0),
			LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-0abc"), Version: aws.String("4")}})
	}
	return r
}

func TestGroupsReadChunksAndKeepsGoneInstances(t *testing.T) {
	r := fleetOf(450)
	g, err := asg.NewGroups(r, r)
	if err != nil {
		t.Fatal(err)
	}
	s, err := g.Read(context.Background(), "grp", scale.ErrGroupNotFound)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "grp" || s.Desired != 450 || s.Min != 1 || s.Max != 500 || len(s.Members) != 450 {
		t.Fatalf("snapshot %+v", s)
	}
	if s.LaunchTemplate == nil || aws.ToString(s.LaunchTemplate.LaunchTemplateName) != "lt" {
		t.Errorf("launch template %+v, want the mixed instances policy's", s.LaunchTemplate)
	}
	if len(r.filters) != 3 || len(r.filters[0]) != 200 || len(r.filters[1]) != 200 || len(r.filters[2]) != 50 {
		t.Errorf("DescribeInstances filters of %d calls, want 200+200+50", len(r.filters))
	}
	m := s.Members[0]
	if m.Instance.ID != "i-0" || !m.Instance.Protected || !m.Instance.State.InService() || m.Instance.LaunchTemplateVersion != "4" || m.Instance.LaunchTemplateID != "lt-0abc" ||
		m.PrivateIP != "10.1.0.0" || !m.Instance.LaunchedAt.Equal(time.Unix(700, 0)) {
		t.Errorf("member %+v", m)
	}
	if m := s.Members[1]; m.PrivateIP != "" || !m.Instance.LaunchedAt.IsZero() {
		t.Errorf("an instance EC2 no longer lists got EC2 details: %+v", m)
	}
	if m := s.Members[449]; m.PrivateIP != "10.1.0.449" {
		t.Errorf("last member of the third chunk: %+v", m)
	}

	sentinel := errors.New("the caller's not found")
	if _, err := g.Read(context.Background(), "other", sentinel); !errors.Is(err, sentinel) {
		t.Errorf("missing group: %v, want it to wrap the caller's sentinel", err)
	}
	if _, err := asg.NewGroups(nil, nil); err == nil {
		t.Error("nil clients accepted")
	}
}

// A failed EC2 lookup fails Read, but not ReadGroup: the group and its members come back without
// addresses or launch times, and the lookup's error separately (the caller's own failure).
func TestReadGroupKeepsTheGroupWhenEC2Fails(t *testing.T) {
	r := fleetOf(3)
	r.ec2Err = &smithy.GenericAPIError{Code: "RequestLimitExceeded", Message: "Request limit exceeded."}
	g, err := asg.NewGroups(r, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Read(context.Background(), "grp", scale.ErrGroupNotFound); !errors.Is(err, r.ec2Err) {
		t.Errorf("Read with EC2 failing: %v, want its error", err)
	}
	s, ec2Err, err := g.ReadGroup(context.Background(), "grp", scale.ErrGroupNotFound)
	if err != nil || !errors.Is(ec2Err, r.ec2Err) {
		t.Fatalf("ReadGroup: %v, EC2 error %v; want no error, EC2's apart", err, ec2Err)
	}
	if len(s.Members) != 3 || s.Members[0].PrivateIP != "" || !s.Members[0].Instance.LaunchedAt.IsZero() || s.Members[0].Instance.LaunchTemplateID != "lt-0abc" {
		t.Fatalf("members %+v; want all three, from Auto Scaling only", s.Members)
	}
	if _, ec2Err, err := g.ReadGroup(context.Background(), "other", scale.ErrGroupNotFound); !errors.Is(err, scale.ErrGroupNotFound) || ec2Err != nil {
		t.Errorf("missing group: %v, %v", err, ec2Err)
	}
}

func TestGroupServesTheScaleHandler(t *testing.T) {
	r := fleetOf(120)
	g, err := asg.New(r, r)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := g.Describe(ctx, "grp")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "grp" || st.Desired != 120 || len(st.Members) != 120 || st.Members[2].PrivateIP != "10.1.0.2" || st.Members[2].Instance.ID != "i-2" {
		t.Fatalf("described %+v", st.Members[:3])
	}
	if _, err := g.Describe(ctx, "other"); !errors.Is(err, scale.ErrGroupNotFound) {
		t.Errorf("missing group: %v", err)
	}

	ids := make([]string, 0, len(st.Members))
	for _, m := range st.Members {
		ids = append(ids, m.Instance.ID)
	}
	if err := g.SetProtection(ctx, "grp", ids, true); err != nil {
		t.Fatal(err)
	}
	if len(r.protected) != 3 || len(r.protected[0]) != 50 || len(r.protected[1]) != 50 || len(r.protected[2]) != 20 || r.protected[2][19] != "i-119" {
		t.Errorf("SetInstanceProtection chunks %d, want 50+50+20", len(r.protected))
	}
	// One instance terminating since the group was read: the rest of its batch is still set.
	r.protected, r.leaving = nil, map[string]bool{"i-7": true}
	err = g.SetProtection(ctx, "grp", ids[:60], true)
	set := 0
	for _, chunk := range r.protected {
		set += len(chunk)
	}
	if err == nil || !strings.Contains(err.Error(), "i-7") || set != 59 {
		t.Errorf("one leaving instance in a batch: err %v, %d of 60 set; want its error and the 59 others set", err, set)
	}
	r.leaving, r.calls = nil, r.calls[:3] // the calls below are checked after the first SetProtection's three
	if err := g.SetDesiredCapacity(ctx, "grp", 7); err != nil {
		t.Fatal(err)
	}
	if err := g.TerminateInstance(ctx, "i-3"); err != nil {
		t.Fatal(err)
	}
	want := []string{"protect grp true", "protect grp true", "protect grp true", "desired grp 7 cooldown=false", "terminate i-3 decrement=true"}
	if fmt.Sprint(r.calls) != fmt.Sprint(want) {
		t.Errorf("calls %q, want %q", r.calls, want)
	}
}
