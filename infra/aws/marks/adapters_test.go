package marks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	smithy "github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

type fakeAS struct {
	termErr   error
	decrement *bool
	batches   []int // InstanceIds per DescribeAutoScalingInstances call
}

// DescribeAutoScalingInstances knows i-1 and every instance whose id starts with "i-m", all in
// group g, and answers 50 instances at most, as AWS does.
func (f *fakeAS) DescribeAutoScalingInstances(_ context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
	f.batches = append(f.batches, len(in.InstanceIds))
	if len(in.InstanceIds) > 50 {
		return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: "at most 50 instance ids"}
	}
	if slices.Contains(in.InstanceIds, "i-bad") {
		return nil, &smithy.GenericAPIError{Code: "InvalidInstanceID.NotFound", Message: "i-bad"}
	}
	out := &autoscaling.DescribeAutoScalingInstancesOutput{}
	for _, id := range in.InstanceIds {
		if id == "i-1" || strings.HasPrefix(id, "i-m") {
			out.AutoScalingInstances = append(out.AutoScalingInstances, astypes.AutoScalingInstanceDetails{
				InstanceId: aws.String(id), AutoScalingGroupName: aws.String("g"), LifecycleState: aws.String("InService")})
		}
	}
	return out, nil
}

func (f *fakeAS) TerminateInstanceInAutoScalingGroup(_ context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, _ ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error) {
	f.decrement = in.ShouldDecrementDesiredCapacity
	return &autoscaling.TerminateInstanceInAutoScalingGroupOutput{}, f.termErr
}

func TestGroups(t *testing.T) {
	as := &fakeAS{}
	g, err := NewGroups(as)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if group, st, found, err := g.GroupOf(ctx, "i-1"); err != nil || !found || group != "g" || st != "InService" {
		t.Fatalf("GroupOf i-1 = %q %q %v %v", group, st, found, err)
	}
	if _, _, found, err := g.GroupOf(ctx, "i-2"); err != nil || found {
		t.Fatalf("GroupOf i-2: found %v err %v", found, err)
	}
	// GroupsOf: 120 instances, 60 of them members, in calls of 50 at most.
	var ids []string
	for i := range 60 {
		ids = append(ids, fmt.Sprintf("i-m%02d", i), fmt.Sprintf("i-x%02d", i))
	}
	as.batches = nil
	groups, err := g.GroupsOf(ctx, ids)
	if err != nil || len(groups) != 60 || groups["i-m59"] != "g" || groups["i-x00"] != "" {
		t.Fatalf("GroupsOf = %d groups, %v; want the 60 members in g", len(groups), err)
	}
	if !slices.Equal(as.batches, []int{50, 50, 20}) {
		t.Errorf("GroupsOf called with batches %v, want [50 50 20]", as.batches)
	}
	// A batch refused as not found because of one id: the others are asked one by one, and the
	// member among them is still found in its group.
	as.batches = nil
	groups, err = g.GroupsOf(ctx, []string{"i-m01", "i-bad", "i-x01"})
	if err != nil || len(groups) != 1 || groups["i-m01"] != "g" {
		t.Fatalf("GroupsOf with an unknown id = %v, %v; want i-m01 in g", groups, err)
	}
	if !slices.Equal(as.batches, []int{3, 1, 1, 1}) {
		t.Errorf("GroupsOf with an unknown id called with batches %v, want [3 1 1 1]", as.batches)
	}
	if err := g.Terminate(ctx, "i-1", false); err != nil || as.decrement == nil || *as.decrement {
		t.Fatalf("terminate without decrement: %v %v", err, as.decrement)
	}
	as.termErr = &smithy.GenericAPIError{Code: "ValidationError", Message: "would fall below min size"}
	if err := g.Terminate(ctx, "i-1", true); !errors.Is(err, interrupt.ErrRefused) {
		t.Fatalf("validation error: %v, want ErrRefused", err)
	}
	as.termErr = &smithy.GenericAPIError{Code: "Throttling", Message: "slow down"}
	if err := g.Terminate(ctx, "i-1", true); err == nil || errors.Is(err, interrupt.ErrRefused) {
		t.Fatalf("throttling: %v, want a transient error", err)
	}
}

type fakePub struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (p *fakePub) Publish(_ string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *fakePub) Close() error { return nil }

func TestLaunchFollowUpsRepublishTheEventDelayed(t *testing.T) {
	body := []byte(`{"version":"0","id":"ev-1/gate-2","detail-type":"EC2 Instance-launch Lifecycle Action","source":"aws.autoscaling",
"account":"1","time":"2026-11-27T17:00:00Z","region":"us-east-1","resources":[],
"detail":{"LifecycleActionToken":"tok","AutoScalingGroupName":"g","LifecycleHookName":"gate","EC2InstanceId":"i-1","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING"}}`)
	m, err := messages.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	pub := &fakePub{}
	if err := (LaunchFollowUps{Publisher: pub, Queue: "q"}).Schedule(context.Background(), *m.Event, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if len(pub.msgs) != 1 || pub.msgs[0].Metadata.Get(sqs.MetaDelaySeconds) != "2" {
		t.Fatalf("published %v", pub.msgs)
	}
	again, err := messages.Parse(pub.msgs[0].Payload)
	if err != nil {
		t.Fatalf("the follow-up does not parse: %v", err)
	}
	la := again.Payload.(*messages.LifecycleAction)
	if again.Kind != messages.KindLaunchAction || again.ID != "ev-1/gate-2" || la.LifecycleActionToken != "tok" || !again.Time.Equal(m.Time) {
		b, _ := json.Marshal(again)
		t.Fatalf("follow-up %s", b)
	}
}

type fakeSender struct{ err error }

func (f fakeSender) Send(context.Context, string, string) (string, error) { return "cmd-1", f.err }

// SSM's InvalidInstanceId reaches the interrupt handler as ErrUnreachable; other errors as they are.
func TestCommandsMapsAnInstanceSSMCannotReach(t *testing.T) {
	ctx := context.Background()
	c := Commands{Sender: fakeSender{err: &smithy.GenericAPIError{Code: "InvalidInstanceId", Message: "not in a valid state"}}}
	if _, err := c.Send(ctx, "doc", "i-1"); !errors.Is(err, interrupt.ErrUnreachable) {
		t.Fatalf("InvalidInstanceId: %v, want ErrUnreachable", err)
	}
	c = Commands{Sender: fakeSender{err: &smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}}}
	if _, err := c.Send(ctx, "doc", "i-1"); err == nil || errors.Is(err, interrupt.ErrUnreachable) {
		t.Fatalf("throttling: %v, want it as it is", err)
	}
	if id, err := (Commands{Sender: fakeSender{}}).Send(ctx, "doc", "i-1"); err != nil || id != "cmd-1" {
		t.Fatalf("success: %q %v", id, err)
	}
}
