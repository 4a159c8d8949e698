package emulator_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// An injected fault fails the next matching call: "before" refuses it (nothing done), "after"
// serves it and then fails its answer (done, answer lost). Then calls are served again.
func TestInjectedFaults(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	ctx := context.Background()
	client := sqs.NewFromConfig(e.AWSConfig(t), func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(emulator.UniqueName(t, "runnerfleet-faults"))})
	if err != nil {
		t.Fatal(err)
	}
	q := out.QueueUrl
	send := func(body string) error {
		_, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String(body)})
		return err
	}
	code := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return ""
	}

	if err := e.InjectFault(ctx, emulator.Fault{Action: "SendMessage", Status: 400, Code: "ThrottlingException"}); err != nil {
		t.Fatal(err)
	}
	if err := send("refused"); code(err) != "ThrottlingException" {
		t.Fatalf("SendMessage with a fault armed before: %v; want ThrottlingException", err)
	}
	if err := e.InjectFault(ctx, emulator.Fault{Action: "SendMessage", After: true, Status: 500, Code: "InternalError"}); err != nil {
		t.Fatal(err)
	}
	if err := send("answer lost"); code(err) != "InternalError" {
		t.Fatalf("SendMessage with a fault armed after: %v; want InternalError", err)
	}
	if err := send("served"); err != nil {
		t.Fatalf("SendMessage with no fault armed: %v", err)
	}

	got, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range got.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	if strings.Join(bodies, ",") != "answer lost,served" && strings.Join(bodies, ",") != "served,answer lost" {
		t.Errorf("queue holds %q; want the message whose answer was lost and the one served, not the refused one", bodies)
	}

	events, err := e.Log(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var whens []string
	for _, ev := range events {
		if ev.Kind == emulator.KindFaultInjected && ev.String("action") == "SendMessage" {
			whens = append(whens, ev.String("when"))
		}
	}
	if strings.Join(whens, ",") != "before,after" {
		t.Errorf("fault.injected events: %q; want before, after", whens)
	}
}

// A fault that cannot be armed is refused with every problem named.
func TestInjectedFaultRefusedWithEveryProblem(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	resp, err := netguard.HTTPClient(5*time.Second).Post(e.Endpoint+"/_runnerfleet/faults", "application/json",
		strings.NewReader(`{"action": "Send Command", "when": "during", "status": 200, "count": 0}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 {
		t.Fatalf("HTTP %d: %s; want 400", resp.StatusCode, body)
	}
	for _, want := range []string{`\"action\"`, `\"when\"`, `\"status\"`, `\"code\"`, `\"count\"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("answer %s does not name %s", body, want)
		}
	}
}
