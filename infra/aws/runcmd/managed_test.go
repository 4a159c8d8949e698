package runcmd_test

import (
	"context"
	"testing"

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
