package cycle_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/messages"
)

// retiredOld returns the old instances whose terminate hook started, in log order.
func (e *env) retiredOld(old []string) []string {
	var out []string
	for _, ev := range e.log() {
		if id := ev.String("instance_id"); ev.Kind == "hook.start" && slices.Contains(old, id) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// --abort mid-cycle: the cycle stops after the step in flight; nothing more is retired.
func TestAbortMidCycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, spec{instances: 3})
	old := e.ids()
	e.jobsOnEach(longJob)
	e.newVersion()
	e.startTicking()
	if err := e.command(messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	e.eventually("a first old instance retired", func() bool { return len(e.record().Retired) > 0 })
	if err := e.command(messages.CycleArgs{Abort: true}); err != nil {
		t.Fatal(err)
	}
	rec := e.record()
	if rec.Status != cycle.StatusAborted || !strings.Contains(rec.Reason, "aborted by test") {
		t.Fatalf("after abort: %s %q", rec.Status, rec.Reason)
	}
	atAbort := slices.Clone(rec.Retired)
	time.Sleep(3 * time.Second) // ten more ticks
	if got := e.retiredOld(old); len(got) != len(atAbort) {
		t.Fatalf("retired %v after the abort; at the abort: %v", got, atAbort)
	}
	if rec2 := e.record(); rec2.Steps != rec.Steps || rec2.Status != cycle.StatusAborted {
		t.Fatalf("steps went on after the abort: %d → %d (%s)", rec.Steps, rec2.Steps, rec2.Status)
	}
	// The retired one still drains to the end: no job killed.
	e.eventually("the retired instance drained", func() bool {
		m := e.members()
		for _, id := range atAbort {
			if _, ok := m[id]; ok {
				return false
			}
		}
		return true
	})
	e.noneKilled()
	// publisher status says so.
	out, err := e.run("status", "--fleet", "blue", "--config", e.workerConfig("runnerfleet-control.fifo"))
	if err != nil || !strings.Contains(out, "aborted") || !strings.Contains(out, "aborted by test") {
		t.Fatalf("publisher status after the abort: %v\n%s", err, out)
	}
}

// A worker restart mid-cycle: a fresh handler resumes from the record and finishes.
func TestRestartResumesTheCycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, spec{instances: 3})
	old := e.ids()
	e.jobsOnEach(longJob)
	e.newVersion()
	e.startTicking()
	if err := e.command(messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	e.eventually("a first old instance retired", func() bool { return len(e.record().Retired) > 0 })
	e.stopTicking() // the worker goes away mid-cycle
	steps := e.record().Steps
	time.Sleep(time.Second)
	if got := e.record().Steps; got != steps {
		t.Fatalf("steps taken while no worker ran: %d → %d", steps, got)
	}
	e.startTicking() // a new worker, new handler, same table
	e.eventually("the cycle ends", func() bool { return e.record().Status.Final() })
	if rec := e.record(); rec.Status != cycle.StatusSucceeded {
		t.Fatalf("after restart: %s %q", rec.Status, rec.Reason)
	}
	m := e.members()
	for _, id := range old {
		if _, ok := m[id]; ok {
			t.Errorf("old %s still in the group", id)
		}
	}
	e.noneKilled()
}

const parameterPattern = `{"source":["aws.ssm"],"detail-type":["Parameter Store Change"]}`

// PutParameter on the fleet's token parameter, with GitLab (the simulator) rejecting the old
// token on two of the three instances: a cycle starts by itself from the Parameter Store Change
// event, retires the rejected instances first, and finishes with 0 jobs killed.
func TestTokenRotationCyclesByItself(t *testing.T) {
	t.Parallel()
	param := "/" + emulator.UniqueName(t, "runnerfleet-token")
	e := newEnv(t, spec{instances: 3, token: param})
	ctx := context.Background()
	ssmc := ssm.NewFromConfig(e.awsCfg)
	if _, err := ssmc.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(param), Value: aws.String("glrt-old-canary-000"), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}
	// The fleet's rule on its token parameter, to a queue this test's "worker" reads.
	events := e.newQueue(emulator.UniqueName(t, "runnerfleet-events"))
	eb := eventbridge.NewFromConfig(e.awsCfg)
	rule := emulator.UniqueName(t, "runnerfleet-token-rule")
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(rule), EventPattern: aws.String(parameterPattern)}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(rule), Targets: []ebtypes.Target{{
		Id: aws.String("q"), Arn: aws.String("arn:aws:sqs:us-east-1:123456789012:" + events[strings.LastIndex(events, "/")+1:])}}}); err != nil {
		t.Fatal(err)
	}
	old := e.ids()
	e.jobsOnEach(longJob)
	rejected := old[:2]
	for _, id := range rejected {
		e.setFault(id, "reject-token")
	}
	e.startTicking()
	// Deliver the queue's events to the handler, as the worker's router would.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := e.sqs.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(events), WaitTimeSeconds: 1, MaxNumberOfMessages: 10})
			if err != nil {
				continue
			}
			for _, m := range out.Messages {
				msg, err := messages.Parse([]byte(aws.ToString(m.Body)))
				if err != nil {
					t.Errorf("parsing %s: %v", aws.ToString(m.Body), err)
					continue
				}
				e.mu.Lock()
				h := e.handler
				e.mu.Unlock()
				if h.Handles(msg) {
					if err := h.Handle(ctx, msg); err != nil {
						t.Errorf("handling the parameter change: %v", err)
					}
				}
				_, _ = e.sqs.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(events), ReceiptHandle: m.ReceiptHandle})
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	if _, err := ssmc.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(param), Value: aws.String("glrt-new-canary-111"),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	e.eventually("a token cycle starts by itself", func() bool { return e.record().Trigger == cycle.TriggerToken })
	e.eventually("the cycle ends", func() bool { return e.record().Status.Final() })
	rec := e.record()
	for _, ev := range rec.Events {
		t.Logf("cycle: %s %s", ev.At.Format("15:04:05.000"), ev.Text)
	}
	if rec.Status != cycle.StatusSucceeded || !rec.All {
		t.Fatalf("token cycle %s (all %v): %q", rec.Status, rec.All, rec.Reason)
	}
	order := e.retiredOld(old)
	if len(order) != 3 {
		t.Fatalf("retired %v, want all 3 old instances", order)
	}
	first := slices.Clone(order[:2])
	slices.Sort(first)
	if !slices.Equal(first, rejected) {
		t.Fatalf("retirement order %v: the rejected %v were not first", order, rejected)
	}
	e.noneKilled()
}
