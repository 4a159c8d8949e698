package world_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/integration/world"
)

// BenchmarkSendCommand measures SendCommand of a drain document to one of 50 managed instances,
// against the floor of a plain moto SSM call (GetParameter) in the same run; the ratio says what
// the emulator's extension adds (asking the simulator for its instances, our run state).
func BenchmarkSendCommand(b *testing.B) {
	w := world.Start(b, world.Options{Sim: runnersim.Config{PollInterval: time.Second}})
	c := newClients(b, w)
	ctx := context.Background()
	group := newGroup(b, c, 50)
	st := waitSim(b, w, "50 instances", func(st runnersim.State) bool { return len(groupRunners(st, group)) == 50 })
	ids := groupRunners(st, group)
	if _, err := c.ssm.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/runnerfleet/bench"), Value: aws.String("x"), Type: "String"}); err != nil {
		b.Fatal(err)
	}
	measure := func(n int, f func(i int) error) time.Duration {
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := f(i); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	const floorRuns = 50
	floor := measure(floorRuns, func(int) error {
		_, err := c.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/runnerfleet/bench")})
		return err
	})
	b.ResetTimer()
	per := measure(b.N, func(i int) error {
		_, err := c.ssm.SendCommand(ctx, &ssm.SendCommandInput{
			DocumentName: aws.String("runnerfleet-bench-status"),
			InstanceIds:  []string{ids[i%len(ids)].InstanceID},
		})
		return err
	})
	b.StopTimer()
	b.ReportMetric(float64(floor.Microseconds()), "floor-us/op")
	b.ReportMetric(float64(per)/float64(floor), "x-floor")
	b.Log(fmt.Sprintf("SendCommand %s/op, GetParameter floor %s/op", per, floor))
}
