package emulator_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

func fifoQueue(t testing.TB, client *sqs.Client, name string) string {
	t.Helper()
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{
		QueueName:  aws.String(name + ".fifo"),
		Attributes: map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "300"},
	})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	for i := 1; i <= 2; i++ {
		if _, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{
			QueueUrl: aws.String(url), MessageBody: aws.String(fmt.Sprintf("m%d", i)), MessageGroupId: aws.String("fleet"),
		}); err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
	}
	return url
}

func receiveOne(t testing.TB, client *sqs.Client, url string, wait int32) []sqstypes.Message {
	t.Helper()
	out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), WaitTimeSeconds: wait, MaxNumberOfMessages: 1,
	})
	if err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	return out.Messages
}

// A group freed by DeleteMessage during a long poll is delivered within that poll (moto kept the
// in-flight groups it saw when the poll began, so the poll ran out empty).
func TestFIFOLongPollDeliversTheNextMessageWhenItsGroupIsFreed(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	url := fifoQueue(t, c.sqs, emulator.UniqueName(t, "runnerfleet-fifo"))
	first := receiveOne(t, c.sqs, url, 0)
	if len(first) != 1 || aws.ToString(first[0].Body) != "m1" {
		t.Fatalf("first receive = %+v, want m1", first)
	}
	if got := receiveOne(t, c.sqs, url, 0); len(got) != 0 {
		t.Fatalf("m2 was delivered while m1's group was in flight: %+v", got)
	}
	var wg sync.WaitGroup
	var got []sqstypes.Message
	wg.Add(1)
	go func() {
		defer wg.Done()
		got = receiveOne(t, c.sqs, url, 10)
	}()
	time.Sleep(1500 * time.Millisecond) // let the poll begin before the group is freed
	if _, err := c.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: first[0].ReceiptHandle}); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	wg.Wait()
	if len(got) != 1 || aws.ToString(got[0].Body) != "m2" {
		t.Fatalf("the long poll returned %+v, want m2 once m1 was deleted", got)
	}
}

// cpuTicks reads a process's user+system CPU time in clock ticks from /proc/PID/stat.
func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("reading the emulator's CPU time: %v", err)
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parsing /proc/%d/stat: %v %v", pid, err1, err2)
	}
	return utime + stime
}

// fifoPollCPU starts an emulator (without the listed patches), parks a FIFO queue's only group
// in flight, and has two consumers long-poll it rounds times for 1 s each; it returns the
// emulator's CPU ticks per consumer-second of polling.
func fifoPollCPU(b *testing.B, rounds int, without ...string) float64 {
	e, err := emulator.Launch(emulator.Options{Without: without})
	if err != nil {
		b.Fatalf("starting the emulator: %v", err)
	}
	defer e.Stop()
	emulator.SetTestEnv()
	cfg, err := loadConfig(e)
	if err != nil {
		b.Fatal(err)
	}
	client := sqs.NewFromConfig(cfg)
	url := fifoQueue(b, client, "runnerfleet-bench-fifo")
	if got := receiveOne(b, client, url, 0); len(got) != 1 {
		b.Fatalf("could not take the group's first message: %+v", got)
	}
	time.Sleep(500 * time.Millisecond)
	start := cpuTicks(b, e.PID())
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				if got := receiveOne(b, client, url, 1); len(got) != 0 {
					b.Errorf("a message of the in-flight group was delivered: %+v", got)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(cpuTicks(b, e.PID())-start) / float64(2*rounds)
}

// BenchmarkFIFOLongPollCPU measures the emulator's CPU while two consumers long-poll a FIFO queue
// whose only group is in flight: moto's own receive (the baseline, measured in the same run) and
// ours. Reports clock ticks (1/100 s) per consumer-second of polling for each, and their ratio.
func BenchmarkFIFOLongPollCPU(b *testing.B) {
	rounds := 3 * b.N
	if rounds > 10 {
		rounds = 10
	}
	baseline := fifoPollCPU(b, rounds, "sqs")
	fixed := fifoPollCPU(b, rounds)
	b.ReportMetric(baseline, "moto-ticks/poll-s")
	b.ReportMetric(fixed, "fixed-ticks/poll-s")
	if baseline > 0 {
		b.ReportMetric(fixed/baseline, "fixed/moto")
	}
}

func loadConfig(e *emulator.Emulator) (aws.Config, error) {
	return rfaws.LoadConfig(context.Background(), rfaws.ConfigOptions{Region: emulator.Region, BaseEndpoint: e.Endpoint, LoopbackOnly: true})
}
