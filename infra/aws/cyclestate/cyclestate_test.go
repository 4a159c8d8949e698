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
}

func (f *fakeAS) DescribeAutoScalingGroups(_ context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
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

type fakeEC2 struct{ latest, def int64 }

func (f fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	var insts []ec2types.Instance
	for _, id := range in.Filters[0].Values {
		if id == "i-gone" {
			continue
		}
		insts = append(insts, ec2types.Instance{InstanceId: aws.String(id), PrivateIpAddress: aws.String("10.0.0.9"), LaunchTime: aws.Time(time.Unix(500, 0))})
	}
	return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{{Instances: insts}}}, nil
}

func (f fakeEC2) DescribeLaunchTemplates(_ context.Context, in *ec2.DescribeLaunchTemplatesInput, _ ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error) {
	return &ec2.DescribeLaunchTemplatesOutput{LaunchTemplates: []ec2types.LaunchTemplate{{LatestVersionNumber: aws.Int64(f.latest), DefaultVersionNumber: aws.Int64(f.def)}}}, nil
}

func group(version string) *fakeAS {
	return &fakeAS{group: astypes.AutoScalingGroup{
		AutoScalingGroupName: aws.String("grp"), DesiredCapacity: aws.Int32(2), MinSize: aws.Int32(1), MaxSize: aws.Int32(2),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String(version)},
		Instances: []astypes.Instance{
			{InstanceId: aws.String("i-1"), LifecycleState: astypes.LifecycleStateInService, ProtectedFromScaleIn: aws.Bool(true),
				LaunchTemplate: &astypes.LaunchTemplateSpecification{Version: aws.String("1")}},
			{InstanceId: aws.String("i-gone"), LifecycleState: astypes.LifecycleStateTerminating,
				LaunchTemplate: &astypes.LaunchTemplateSpecification{Version: aws.String("2")}},
		},
	}}
}

func TestGroupDescribeResolvesTheVersion(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{{"$Latest", "3"}, {"$Default", "2"}, {"", "2"}, {"7", "7"}} {
		g, err := NewGroup(group(tc.spec), fakeEC2{latest: 3, def: 2})
		if err != nil {
			t.Fatal(err)
		}
		st, err := g.Describe(context.Background(), "grp")
		if err != nil {
			t.Fatal(err)
		}
		if st.CurrentVersion != tc.want || st.Desired != 2 || st.Min != 1 || st.Max != 2 || len(st.Members) != 2 {
			t.Errorf("%q: %+v", tc.spec, st)
		}
		m := st.Members[0]
		if m.ID != "i-1" || m.Version != "1" || !m.Protected || m.PrivateIP != "10.0.0.9" || !m.LaunchedAt.Equal(time.Unix(500, 0)) || !m.State.InService() {
			t.Errorf("member %+v", m)
		}
		if st.Members[1].PrivateIP != "" {
			t.Errorf("an instance EC2 no longer lists got an address: %+v", st.Members[1])
		}
	}
	g, _ := NewGroup(group("1"), fakeEC2{})
	if _, err := g.Describe(context.Background(), "other"); !errors.Is(err, cycle.ErrGroupNotFound) {
		t.Fatalf("missing group: %v", err)
	}
}

func TestGroupSurgeRaisesMaxFirstAndRestores(t *testing.T) {
	as := group("1")
	g, _ := NewGroup(as, fakeEC2{})
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
