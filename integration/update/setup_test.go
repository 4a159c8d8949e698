// Package update_test checks fleet updates end to end on the local world: the publisher binary
// checks a properties file and sends `update`; an in-process worker (the real router, command
// safety, the update handler and the CloudFormation adapter, over the emulator's SQS, DynamoDB,
// CloudFormation and EventBridge) applies it and follows the stack on its Stack Status Change
// events.
package update_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	runner "github.com/runnerfleet/runnerfleet/deploy/runner"
	"github.com/runnerfleet/runnerfleet/handlers/update"
	"github.com/runnerfleet/runnerfleet/infra/aws/stacks"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/properties"
	"github.com/runnerfleet/runnerfleet/infra/router"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/gobuild"
	"github.com/runnerfleet/runnerfleet/messages"
)

// canary is planted in the fleet's token parameter; it must never appear anywhere.
const canary = "glrt-CANARY-7f3e9a1c5b2d4e6f"

// env is one local world with one fleet, its stack, queues, table and an in-process worker.
type env struct {
	t        *testing.T
	emu      *emulator.Emulator
	awsCfg   aws.Config
	fleet    string
	stack    string
	control  string // URL
	dlq      string // URL
	table    string
	config   string // worker config file for the publisher
	tokenPar string

	cf       *cloudformation.Client
	sqs      *awssqs.Client
	ddb      *dynamodb.Client
	reg      *prometheus.Registry
	logs     *lockedBuffer
	seen     *lockedBuffer // every body the worker received
	outs     *lockedBuffer // every publisher output
	tmpl     string
	override string // a template the publisher sends instead of tmpl
	fleetDir string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// envOptions tune newEnv.
type envOptions struct {
	// noStackRule leaves out the EventBridge rule of the stack's status changes: only ticks
	// advance an update.
	noStackRule bool
	// runnerTemplate makes the worker apply the runner template it embeds (deploy/runner), and
	// the publisher send no template of its own.
	runnerTemplate bool
}

func newEnv(t *testing.T, opts ...envOptions) *env {
	t.Helper()
	emu := emulator.Start(t, emulator.Options{})
	e := &env{t: t, emu: emu, awsCfg: emu.AWSConfig(t), reg: prometheus.NewRegistry(),
		logs: &lockedBuffer{}, seen: &lockedBuffer{}, outs: &lockedBuffer{}}
	e.cf = cloudformation.NewFromConfig(e.awsCfg)
	e.sqs = awssqs.NewFromConfig(e.awsCfg)
	e.ddb = dynamodb.NewFromConfig(e.awsCfg)
	ctx := context.Background()
	e.fleet = emulator.UniqueName(t, "docker")
	e.stack = emulator.UniqueName(t, "runnerfleet-fleet")
	e.table = emulator.UniqueName(t, "runnerfleet-state")
	e.tokenPar = "/runnerfleet/" + e.fleet + "/token"
	dir, _ := os.Getwd()
	e.tmpl = filepath.Join(dir, "testdata", "fleet.yaml")
	e.fleetDir = t.TempDir()

	// The token, as an operator stores it: RunnerFleet only ever names it.
	if _, err := ssm.NewFromConfig(e.awsCfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(e.tokenPar), Value: aws.String(canary), Type: ssmtypes.ParameterTypeSecureString,
	}); err != nil {
		t.Fatalf("PutParameter: %v", err)
	}
	e.dlq = e.fifo(emulator.UniqueName(t, "runnerfleet-control-dlq") + ".fifo")
	e.control = e.fifo(emulator.UniqueName(t, "runnerfleet-control") + ".fifo")
	if err := state.CreateTable(ctx, e.ddb, e.table); err != nil {
		t.Fatal(err)
	}
	var o envOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if !o.noStackRule {
		e.stackRule()
	}
	e.config = filepath.Join(t.TempDir(), "worker.yaml")
	cfg := fmt.Sprintf("region: %s\nendpoint: %s\nloopback_only: true\nstate_table: %s\nqueues:\n  control: {name: %q, dead_letter: %q}\nfleets:\n  - {name: %s, group: %s, stack: %s, token_parameter: %s, allow_custom_template: %t}\n",
		emulator.Region, emu.Endpoint, e.table, e.control, e.dlq, e.fleet, "runnerfleet-"+e.stack, e.stack, e.tokenPar,
		!o.runnerTemplate) // the small template's tests send it with every update
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.runnerTemplate {
		e.tmpl = ""
	}
	e.startWorker()
	return e
}

// stackRule is the fleet stack's rule: its status changes go to the control queue, group = fleet.
func (e *env) stackRule() {
	t := e.t
	ctx := context.Background()
	eb := eventbridge.NewFromConfig(e.awsCfg)
	rule := emulator.UniqueName(t, "runnerfleet-stack")
	pattern := `{"source":["aws.cloudformation"],"detail-type":["CloudFormation Stack Status Change"]}`
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(rule), EventPattern: aws.String(pattern)}); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	qname := e.control[strings.LastIndex(e.control, "/")+1:]
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(rule), Targets: []ebtypes.Target{{
		Id: aws.String("control"), Arn: aws.String("arn:aws:sqs:" + emulator.Region + ":123456789012:" + qname),
		SqsParameters: &ebtypes.SqsParameters{MessageGroupId: aws.String(e.fleet)},
	}}}); err != nil {
		t.Fatalf("PutTargets: %v", err)
	}
}

func (e *env) fifo(name string) string {
	e.t.Helper()
	out, err := e.sqs.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNameFifoQueue): "true", string(sqstypes.QueueAttributeNameContentBasedDeduplication): "true"}})
	if err != nil {
		e.t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// startWorker composes the worker's update path as cmd/worker does: command safety around the
// command handler, update on commands, ticks and stack status events.
func (e *env) startWorker() {
	t := e.t
	logger := observe.NewLogger(e.logs, slog.LevelDebug)
	table, err := state.New(e.ddb, e.table)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := stacks.New(e.cf)
	if err != nil {
		t.Fatal(err)
	}
	template := runner.Template
	if e.tmpl != "" {
		template = mustRead(t, e.tmpl)
	}
	h, err := update.New(update.Config{
		Template:           template,
		TemplateParameters: properties.ParameterNames,
		Fleets:             []update.Fleet{{Name: e.fleet, Stack: e.stack, AllowTemplateBody: e.tmpl != ""}},
		PollInterval:       200 * time.Millisecond,
		ChangeSetWait:      5 * time.Second,
	}, cf, table, e.reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	safety, err := router.CommandSafety(router.SafetyConfig{
		KnownFleet: func(n string) bool { return n == e.fleet },
		Ledger:     table,
		MaxAge:     10 * time.Minute,
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	commands := safety(func(ctx context.Context, m *messages.Message) error {
		c := m.Payload.(*messages.Command)
		switch c.Type {
		case messages.CommandUpdate:
			return h.HandleCommand(ctx, c)
		case messages.CommandTick:
			return h.Advance(ctx, c.Fleet)
		}
		return messages.Reject("command type %s is not part of this test", c.Type)
	})
	dlqPub, err := sqs.NewPublisher(sqs.PublisherConfig{}, e.sqs, logger)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(router.Config{HandlerTimeout: 30 * time.Second, Retry: router.Retry{MaxRetries: 1, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second}},
		router.Registry{messages.KindCommand: commands, messages.KindStackStatus: h.HandleStackStatus},
		dlqPub, observe.NewMetrics(e.reg), logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := sqs.NewSubscriber(sqs.SubscriberConfig{WaitTime: time.Second, VisibilityTimeout: 30 * time.Second}, e.sqs, logger)
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := message.MessageTransformSubscriberDecorator(func(m *message.Message) {
		fmt.Fprintf(e.seen, "%s\n", m.Payload)
	})(sub)
	if err != nil {
		t.Fatal(err)
	}
	withSender, err := router.WithSender(recorded)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddQueue(router.Queue{Name: "control", Topic: e.control, DeadLetter: e.dlq, Subscriber: withSender}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(context.Background()); err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	<-r.Running()
	t.Cleanup(func() {
		_ = r.Close()
		<-done
		_ = dlqPub.Close()
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var ()

// publisherBinary builds cmd/publisher once per test binary.
func publisherBinary(t *testing.T) string {
	t.Helper()
	return gobuild.Once(t, "github.com/runnerfleet/runnerfleet/cmd/publisher")
}

// publisher runs the publisher binary; it returns its combined output and exit code.
func (e *env) publisher(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, publisherBinary(e.t), args...)
	cmd.Env = append(os.Environ(), "RUNNERFLEET_CONFIG=", "RUNNERFLEET_CONFIG_PARAMETER=", "USER=integration")
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(e.outs, "$ publisher %s\n%s\n", strings.Join(args, " "), out)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("running the publisher: %v", err)
	}
	return string(out), code
}

// update runs `publisher update` for the fleet with a properties file of these lines.
func (e *env) update(lines []string, extra ...string) (string, int) {
	e.t.Helper()
	path := filepath.Join(e.fleetDir, fmt.Sprintf("fleet-%d.properties", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	tmpl := e.tmpl
	if e.override != "" {
		tmpl = e.override
	}
	args := []string{"update", "--fleet", e.fleet, "--config", e.config, "--properties", path, "--follow-interval", "300ms", "--timeout", "2m"}
	if tmpl != "" {
		args = append(args, "--template", tmpl)
	}
	args = append(args, extra...)
	return e.publisher(args...)
}

func (e *env) stackParameters() (string, map[string]string) {
	e.t.Helper()
	out, err := e.cf.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(e.stack)})
	if err != nil {
		e.t.Fatalf("DescribeStacks: %v", err)
	}
	ps := map[string]string{}
	for _, p := range out.Stacks[0].Parameters {
		ps[aws.ToString(p.ParameterKey)] = aws.ToString(p.ParameterValue)
	}
	return string(out.Stacks[0].StackStatus), ps
}

func (e *env) record() update.Record {
	e.t.Helper()
	r, ok := e.tryRecord()
	if !ok {
		e.t.Fatal("no update record")
	}
	return r
}

func (e *env) tryRecord() (update.Record, bool) {
	e.t.Helper()
	table, _ := state.New(e.ddb, e.table)
	pk, sk := update.Key(e.fleet)
	body, _, found, err := table.Load(context.Background(), pk, sk)
	if err != nil {
		e.t.Fatalf("reading the update record: %v", err)
	}
	if !found {
		return update.Record{}, false
	}
	r, err := update.DecodeRecord(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return r, true
}

// deadLetters drains the DLQ: each body with its reason.
func (e *env) deadLetters(want int) map[string]string {
	e.t.Helper()
	got := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		out, err := e.sqs.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{QueueUrl: aws.String(e.dlq),
			MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			e.t.Fatalf("ReceiveMessage: %v", err)
		}
		for _, m := range out.Messages {
			reason := ""
			if a, ok := m.MessageAttributes[sqs.MetaReason]; ok {
				reason = aws.ToString(a.StringValue)
			}
			got[aws.ToString(m.Body)] = reason
			_, _ = e.sqs.DeleteMessage(context.Background(), &awssqs.DeleteMessageInput{QueueUrl: aws.String(e.dlq), ReceiptHandle: m.ReceiptHandle})
		}
	}
	return got
}

// publishRaw sends a command body straight to the control queue with its own dedup id.
func (e *env) publishRaw(c messages.Command, dedup string) {
	e.t.Helper()
	body, err := c.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.sqs.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: aws.String(e.control), MessageBody: aws.String(string(body)),
		MessageGroupId: aws.String(c.Fleet), MessageDeduplicationId: aws.String(dedup)}); err != nil {
		e.t.Fatalf("SendMessage: %v", err)
	}
}

// everything is every output, log line, message, metric and state record of the run, for greps.
func (e *env) everything() string {
	e.t.Helper()
	var b strings.Builder
	b.WriteString(e.outs.String())
	b.WriteString(e.logs.String())
	b.WriteString(e.seen.String())
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		_, _ = expfmt.MetricFamilyToText(&b, mf)
	}
	out, err := e.ddb.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(e.table)})
	if err != nil {
		e.t.Fatal(err)
	}
	items, _ := json.Marshal(out.Items)
	b.Write(items)
	for body, reason := range e.deadLetters(0) {
		b.WriteString(body + reason)
	}
	return b.String()
}
