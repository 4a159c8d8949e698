package runcmd_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/runnerfleet/runnerfleet/infra/aws/runcmd"
)

// pingAPI answers DescribeInstanceInformation with one instance of the given ping status (the
// emulator reports every instance it runs Online, so the other statuses are tested here).
type pingAPI struct {
	runcmd.API
	status types.PingStatus
}

func (p pingAPI) DescribeInstanceInformation(context.Context, *ssm.DescribeInstanceInformationInput, ...func(*ssm.Options)) (*ssm.DescribeInstanceInformationOutput, error) {
	return &ssm.DescribeInstanceInformationOutput{InstanceInformationList: []types.InstanceInformation{
		{InstanceId: aws.String("i-1"), PingStatus: p.status},
	}}, nil
}

// A lost connection is not "unmanaged": the drain would complete the action at once, while the
// runner may be running jobs. Only Inactive (stopped, terminated) is.
func TestManagedByPingStatus(t *testing.T) {
	for status, want := range map[types.PingStatus]bool{
		types.PingStatusOnline: true, types.PingStatusConnectionLost: true, types.PingStatusInactive: false,
	} {
		r, err := runcmd.New(pingAPI{status: status})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.Managed(context.Background(), "i-1"); err != nil || got != want {
			t.Errorf("Managed with ping status %s = %v, %v; want %v", status, got, err, want)
		}
	}
}

// sendAPI records what SendCommand was asked.
type sendAPI struct {
	runcmd.API
	got *ssm.SendCommandInput
}

func (s *sendAPI) SendCommand(_ context.Context, in *ssm.SendCommandInput, _ ...func(*ssm.Options)) (*ssm.SendCommandOutput, error) {
	s.got = in
	return &ssm.SendCommandOutput{Command: &types.Command{CommandId: aws.String("c-1")}}, nil
}

// The delivery timeout reaches SSM (the emulator ignores it), within AWS's floor of 30 s.
func TestSendAsksSSMToDropUndeliveredCommands(t *testing.T) {
	for _, tc := range []struct {
		set  time.Duration
		want int32
	}{{0, 600}, {2 * time.Minute, 120}, {time.Second, 30}, {90500 * time.Millisecond, 91}} {
		api := &sendAPI{}
		r, err := runcmd.New(api)
		if err != nil {
			t.Fatal(err)
		}
		if tc.set > 0 {
			r = r.WithDeliveryTimeout(tc.set)
		}
		if _, err := r.Send(context.Background(), "doc", "i-1"); err != nil {
			t.Fatal(err)
		}
		if got := aws.ToInt32(api.got.TimeoutSeconds); got != tc.want {
			t.Errorf("delivery timeout %s: TimeoutSeconds %d, want %d", tc.set, got, tc.want)
		}
	}
}
