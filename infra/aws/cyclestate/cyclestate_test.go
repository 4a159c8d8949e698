package cyclestate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

type fakeTable struct {
	mu      sync.Mutex
	body    []byte
	version int64
	expires time.Time
	pk, sk  string
}

func (f *fakeTable) Load(_ context.Context, pk, sk string) ([]byte, int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.body, f.version, f.body != nil, nil
}

func (f *fakeTable) Save(_ context.Context, pk, sk string, body []byte, version int64, _, expires time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if version != f.version {
		return false, nil
	}
	f.body, f.version, f.expires, f.pk, f.sk = body, version+1, expires, pk, sk
	return true, nil
}

func TestStoreRoundTripAndTTL(t *testing.T) {
	tbl := &fakeTable{}
	s, err := New(tbl)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := cycle.Record{ID: "c1", Status: cycle.StatusRunning, Old: []string{"i-1"}, Desired: 3}
	if ok, err := s.Save(ctx, "blue", rec, 0); !ok || err != nil {
		t.Fatalf("save: %v %v", ok, err)
	}
	if tbl.pk != "fleet#blue" || tbl.sk != "cycle" || !tbl.expires.IsZero() {
		t.Fatalf("key %s/%s expires %v: a running cycle must not expire", tbl.pk, tbl.sk, tbl.expires)
	}
	got, ver, err := s.Load(ctx, "blue")
	if err != nil || ver != 1 || got.ID != "c1" || got.Desired != 3 || len(got.Old) != 1 {
		t.Fatalf("load: %+v %d %v", got, ver, err)
	}
	if ok, _ := s.Save(ctx, "blue", rec, 0); ok {
		t.Fatal("a stale version was saved")
	}
	got.Status, got.FinishedAt = cycle.StatusSucceeded, time.Unix(1000, 0)
	if ok, err := s.Save(ctx, "blue", got, ver); !ok || err != nil {
		t.Fatal(err)
	}
	if !tbl.expires.Equal(time.Unix(1000, 0).Add(cycle.DefaultKeepFinished)) {
		t.Fatalf("finished record expires %v", tbl.expires)
	}
	tbl.body = []byte("{not json")
	if _, _, err := s.Load(ctx, "blue"); err == nil {
		t.Fatal("a garbled record loaded")
	}
	if _, err := New(nil); err == nil {
		t.Fatal("nil table accepted")
	}
}

type fakeAS struct {
	mu         sync.Mutex
	group      astypes.AutoScalingGroup
	maxUpdates []int32
	desired    []int32
	terminated []string
	// describeErr, when set, fails DescribeAutoScalingGroups.
	describeErr error
}

func (f *fakeAS) DescribeAutoScalingGroups(_ context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.describeErr != nil {
		return nil, f.describeErr
	}
	if in.AutoScalingGroupNames[0] != aws.ToString(f.group.AutoScalingGroupName) {
		return &autoscaling.DescribeAutoScalingGroupsOutput{}, nil
	}
	return &autoscaling.DescribeAutoScalingGroupsOutput{AutoScalingGroups: []astypes.AutoScalingGroup{f.group}}, nil
}

func (f *fakeAS) SetDesiredCapacity(_ context.Context, in *autoscaling.SetDesiredCapacityInput, _ ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToInt32(in.DesiredCapacity) > aws.ToInt32(f.group.MaxSize) {
		return nil, errors.New("ValidationError: desired above max")
	}
	f.desired = append(f.desired, aws.ToInt32(in.DesiredCapacity))
	f.group.DesiredCapacity = in.DesiredCapacity
	return &autoscaling.SetDesiredCapacityOutput{}, nil
}

func (f *fakeAS) UpdateAutoScalingGroup(_ context.Context, in *autoscaling.UpdateAutoScalingGroupInput, _ ...func(*autoscaling.Options)) (*autoscaling.UpdateAutoScalingGroupOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxUpdates = append(f.maxUpdates, aws.ToInt32(in.MaxSize))
	f.group.MaxSize = in.MaxSize
	return &autoscaling.UpdateAutoScalingGroupOutput{}, nil
}

func (f *fakeAS) TerminateInstanceInAutoScalingGroup(_ context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, _ ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := aws.ToString(in.InstanceId)
	if !aws.ToBool(in.ShouldDecrementDesiredCapacity) {
		id += " in place"
	}
	f.terminated = append(f.terminated, id)
	return &autoscaling.TerminateInstanceInAutoScalingGroupOutput{}, nil
}

// fakeEC2 answers DescribeInstances (every instance at 10.0.0.9 but i-gone, which EC2 no longer
// lists; or instancesErr) and DescribeLaunchTemplates (one template, id ltID: "lt-0cur" when
// empty), counting the latter's calls.
type fakeEC2 struct {
	mu           sync.Mutex
	latest, def  int64
	ltID         string
	ltCalls      int
	instancesErr error
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.instancesErr != nil {
		return nil, f.instancesErr
	}
	var insts []ec2types.Instance
	for _, id := range in.Filters[0].Values {
		if id == "i-gone" {
			continue
		}
		insts = append(insts, ec2types.Instance{InstanceId: aws.String(id), PrivateIpAddress: aws.String("10.0.0.9"), LaunchTime: aws.Time(time.Unix(500, 0))})
	}
	return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{{Instances: insts}}}, nil
}

func (f *fakeEC2) DescribeLaunchTemplates(_ context.Context, in *ec2.DescribeLaunchTemplatesInput, _ ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ltCalls++
	id := f.ltID
	if id == "" {
		id = "lt-0cur"
	}
	return &ec2.DescribeLaunchTemplatesOutput{LaunchTemplates: []ec2types.LaunchTemplate{{LaunchTemplateId: aws.String(id), LaunchTemplateName: aws.String("lt"),
		LatestVersionNumber: aws.Int64(f.latest), DefaultVersionNumber: aws.Int64(f.def)}}}, nil
}

// group is a group launching from launch template "lt" (by name) at version, with i-1 (launched
// from lt-0old version 1) and i-gone (lt-0cur version 2, terminating, EC2 no longer lists it).
func group(version string) *fakeAS {
	return &fakeAS{group: astypes.AutoScalingGroup{
		AutoScalingGroupName: aws.String("grp"), DesiredCapacity: aws.Int32(2), MinSize: aws.Int32(1), MaxSize: aws.Int32(2),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String(version)},
		Instances: []astypes.Instance{
			{InstanceId: aws.String("i-1"), LifecycleState: astypes.LifecycleStateInService, ProtectedFromScaleIn: aws.Bool(true),
				LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-0old"), LaunchTemplateName: aws.String("lt-before"), Version: aws.String("1")}},
			{InstanceId: aws.String("i-gone"), LifecycleState: astypes.LifecycleStateTerminating,
				LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-0cur"), LaunchTemplateName: aws.String("lt"), Version: aws.String("2")}},
		},
	}}
}

func TestGroupDescribeResolvesTheTemplateAndVersion(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{{"$Latest", "3"}, {"$Default", "2"}, {"", "2"}, {"7", "7"}} {
		ec2api := &fakeEC2{latest: 3, def: 2}
		g, err := NewGroup(group(tc.spec), ec2api)
		if err != nil {
			t.Fatal(err)
		}
		st, err := g.Describe(context.Background(), "grp")
		if err != nil {
			t.Fatal(err)
		}
		// The group names its template by name only: its id is looked up, whatever the version.
		if st.CurrentTemplate != "lt-0cur" || st.CurrentVersion != tc.want || st.Desired != 2 || st.Min != 1 || st.Max != 2 || len(st.Members) != 2 || ec2api.ltCalls != 1 {
			t.Errorf("%q: %+v (%d DescribeLaunchTemplates)", tc.spec, st, ec2api.ltCalls)
		}
		m := st.Members[0]
		if m.ID != "i-1" || m.Template != "lt-0old" || m.Version != "1" || !m.Protected || m.PrivateIP != "10.0.0.9" || !m.LaunchedAt.Equal(time.Unix(500, 0)) || !m.State.InService() {
			t.Errorf("member %+v", m)
		}
		if st.Current(m) || !st.Current(cycle.Member{Template: "lt-0cur", Version: tc.want}) {
			t.Errorf("%q: i-1 (lt-0old version 1) current %v; want old, and lt-0cur version %s current", tc.spec, st.Current(m), tc.want)
		}
		if st.Members[1].PrivateIP != "" || st.AddressErr != nil {
			t.Errorf("an instance EC2 no longer lists got an address, or a failure to look: %+v, %v", st.Members[1], st.AddressErr)
		}
	}
	g, _ := NewGroup(group("1"), &fakeEC2{})
	if _, err := g.Describe(context.Background(), "other"); !errors.Is(err, cycle.ErrGroupNotFound) {
		t.Fatalf("missing group: %v", err)
	}
}

// A group that names its template by id and its version by number needs no lookup; a group with
// a mixed instances policy launches from the policy's template.
func TestGroupDescribeByIDAndMixedInstancesPolicy(t *testing.T) {
	as := group("5")
	as.group.LaunchTemplate = nil
	as.group.MixedInstancesPolicy = &astypes.MixedInstancesPolicy{LaunchTemplate: &astypes.LaunchTemplate{
		LaunchTemplateSpecification: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-0mip"), Version: aws.String("5")}}}
	ec2api := &fakeEC2{}
	g, _ := NewGroup(as, ec2api)
	st, err := g.Describe(context.Background(), "grp")
	if err != nil {
		t.Fatal(err)
	}
	if st.CurrentTemplate != "lt-0mip" || st.CurrentVersion != "5" || ec2api.ltCalls != 0 {
		t.Fatalf("template %q version %q after %d lookups; want the policy's lt-0mip version 5, no lookup", st.CurrentTemplate, st.CurrentVersion, ec2api.ltCalls)
	}
}

// Describe says whose failure a failed look is: Auto Scaling throttling or refusing the worker is
// the worker's (a *cycle.WorkerError with its reason), and a failed DescribeInstances (the
// members' addresses) does not fail Describe but is its AddressErr.
func TestGroupDescribeTellsTheWorkersFailures(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "RequestLimitExceeded", Message: "Request limit exceeded."}
	denied := &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform: autoscaling:DescribeAutoScalingGroups"}
	for _, tc := range []struct {
		err  error
		want string
	}{{&smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}, cycle.WorkerThrottled}, {denied, cycle.WorkerAccessDenied},
		{errors.New("connection reset"), cycle.WorkerAWSError}} {
		as := group("1")
		as.describeErr = tc.err
		g, _ := NewGroup(as, &fakeEC2{})
		_, err := g.Describe(context.Background(), "grp")
		var we *cycle.WorkerError
		if !errors.As(err, &we) || we.Reason != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Auto Scaling failing with %v: %v; want a worker error %q", tc.err, err, tc.want)
		}
	}

	g, _ := NewGroup(group("1"), &fakeEC2{instancesErr: throttled})
	st, err := g.Describe(context.Background(), "grp")
	if err != nil {
		t.Fatalf("DescribeInstances throttled failed Describe: %v", err)
	}
	if st.AddressErr == nil || st.AddressErr.Reason != cycle.WorkerThrottled || len(st.Members) != 2 || st.Members[0].PrivateIP != "" || st.Members[0].Template != "lt-0old" {
		t.Fatalf("address error %v, members %+v; want throttled, both members without address", st.AddressErr, st.Members)
	}
}

func TestGroupSurgeRaisesMaxFirstAndRestores(t *testing.T) {
	as := group("1")
	g, _ := NewGroup(as, &fakeEC2{})
	ctx := context.Background()
	if err := g.SetCapacity(ctx, "grp", 3, 3); err != nil {
		t.Fatal(err)
	}
	if len(as.maxUpdates) != 1 || as.maxUpdates[0] != 3 || len(as.desired) != 1 || as.desired[0] != 3 {
		t.Fatalf("max updates %v desired %v", as.maxUpdates, as.desired)
	}
	if err := g.SetCapacity(ctx, "grp", 3, 3); err != nil || len(as.maxUpdates) != 1 {
		t.Fatalf("max raised again: %v %v", err, as.maxUpdates)
	}
	as.group.DesiredCapacity = aws.Int32(2)
	if err := g.RestoreMax(ctx, "grp", 2); err != nil || as.maxUpdates[1] != 2 {
		t.Fatalf("restore: %v %v", err, as.maxUpdates)
	}
	as.group.DesiredCapacity = aws.Int32(3)
	if err := g.RestoreMax(ctx, "grp", 2); err != nil || as.maxUpdates[2] != 3 {
		t.Fatalf("restore below desired: %v %v", err, as.maxUpdates)
	}
	if err := g.TerminateInstance(ctx, "i-1"); err != nil || as.terminated[0] != "i-1" {
		t.Fatalf("TerminateInstance: %v %v; want i-1 terminated with a decrement", err, as.terminated)
	}
	if err := g.ReplaceInstance(ctx, "i-2"); err != nil || as.terminated[1] != "i-2 in place" {
		t.Fatalf("ReplaceInstance: %v %v; want i-2 terminated without a decrement", err, as.terminated)
	}
}

func TestRunnerFromScrape(t *testing.T) {
	for _, tc := range []struct {
		in   scrape.Result
		want cycle.Runner
	}{
		{scrape.Result{InstanceID: "a", Reason: scrape.ReasonTimeout}, cycle.Runner{InstanceID: "a", Reason: "timeout"}},
		// The worker's failures: cancelled before the runner was asked, a URL the template could not make.
		{scrape.Result{InstanceID: "f", Reason: scrape.ReasonCanceled}, cycle.Runner{InstanceID: "f", Reason: "canceled", Worker: cycle.WorkerDeadline}},
		{scrape.Result{InstanceID: "g", Reason: scrape.ReasonBadURL}, cycle.Runner{InstanceID: "g", Reason: "bad metrics url", Worker: cycle.WorkerURLTemplate}},
		// An instance EC2 no longer lists has no address: the instance's, not the worker's.
		{scrape.Result{InstanceID: "h", Reason: scrape.ReasonNoAddress}, cycle.Runner{InstanceID: "h", Reason: "no address"}},
		{scrape.Result{InstanceID: "b", Known: true, Accepted: true, Capacity: 4, BusyJobs: 2, RunningJobs: 1}, cycle.Runner{InstanceID: "b", Known: true, Healthy: true, Capacity: 4, RunningJobs: 2}},
		{scrape.Result{InstanceID: "c", Known: true, Rejected: true, BusyJobs: 1}, cycle.Runner{InstanceID: "c", Known: true, Rejected: true, RunningJobs: 1}},
		{scrape.Result{InstanceID: "d", Known: true, Accepted: true, Capacity: 0}, cycle.Runner{InstanceID: "d", Known: true}},
		// Metrics answer and slots are offered, but no job request has succeeded yet: not healthy.
		{scrape.Result{InstanceID: "e", Known: true, Capacity: 4}, cycle.Runner{InstanceID: "e", Known: true, Capacity: 4}},
	} {
		if got := Runner(tc.in); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.in.InstanceID, got, tc.want)
		}
	}
}
