package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/drainadapter"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// recordingPublisher keeps what is published (race-safe).
type recordingPublisher struct {
	mu     sync.Mutex
	topics []string
	msgs   []*message.Message
}

func (p *recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		p.topics = append(p.topics, topic)
		p.msgs = append(p.msgs, m)
	}
	return nil
}

func (p *recordingPublisher) Close() error { return nil }

func TestFollowUpsAreDelayedDrainSteps(t *testing.T) {
	pub := &recordingPublisher{}
	fu := drainadapter.FollowUps(pub, "runnerfleet-lifecycle")
	step := messages.DrainStep{Fleet: "blue", InstanceID: "i-1", ActionToken: "tok", GroupName: "g", Attempt: 3}
	for _, delay := range []time.Duration{0, 1500 * time.Millisecond, time.Hour} {
		if err := fu.Schedule(context.Background(), step, delay); err != nil {
			t.Fatal(err)
		}
	}
	if len(pub.msgs) != 3 {
		t.Fatalf("%d messages published, want 3", len(pub.msgs))
	}
	for i, want := range []string{"", "2", fmt.Sprint(sqs.MaxDelaySeconds)} {
		m := pub.msgs[i]
		if pub.topics[i] != "runnerfleet-lifecycle" {
			t.Errorf("published to %q", pub.topics[i])
		}
		if got := m.Metadata.Get(sqs.MetaDelaySeconds); got != want {
			t.Errorf("message %d: delay_seconds %q, want %q", i, got, want)
		}
		parsed, err := messages.Parse(m.Payload)
		if err != nil {
			t.Fatalf("message %d does not parse: %v", i, err)
		}
		ds, ok := parsed.Payload.(*messages.DrainStep)
		if parsed.Kind != messages.KindDrainStep || !ok || ds.ActionToken != "tok" || ds.Attempt != 3 {
			t.Errorf("message %d: %s %+v", i, parsed.Kind, parsed.Payload)
		}
		if m.UUID == "" {
			t.Errorf("message %d has no id", i)
		}
	}
}

// fakeEC2 answers DescribeInstances with one instance's private IP.
type fakeEC2 struct {
	id, ip string
	calls  int
	mu     sync.Mutex
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := &ec2.DescribeInstancesOutput{}
	if len(in.Filters) == 1 && len(in.Filters[0].Values) == 1 && in.Filters[0].Values[0] == f.id {
		out.Reservations = []ec2types.Reservation{{Instances: []ec2types.Instance{{InstanceId: aws.String(f.id), PrivateIpAddress: aws.String(f.ip)}}}}
	}
	return out, nil
}

const runnerPage = `# TYPE gitlab_runner_concurrent gauge
gitlab_runner_concurrent 4
# TYPE gitlab_runner_jobs gauge
gitlab_runner_jobs{runner="r",state="running",executor_stage="",stage=""} 2
`

func TestRunnerJobsByTemplate(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		if strings.Contains(r.URL.Path, "i-gone") {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, runnerPage)
	}))
	defer srv.Close()
	s, err := scrape.New(scrape.Config{}, netguard.HTTPClient(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeEC2{id: "i-ip", ip: "10.1.2.3"}
	cfg := &config.Config{Fleets: []fleet.Settings{
		{Name: "by-id", MetricsURL: srv.URL + "/instances/{{.InstanceID}}/metrics"},
		// The private IP goes in the path here, so the test never dials a 10.x address.
		{Name: "by-ip", MetricsURL: srv.URL + "/ip/{{.PrivateIP}}/metrics"},
	}}
	j, err := newRunnerJobs(s, api, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := j.RunningJobs(ctx, "by-id", "i-1"); err != nil || n != 2 {
		t.Errorf("by-id: %d, %v; want 2 jobs", n, err)
	}
	if api.calls != 0 {
		t.Errorf("a template without .PrivateIP looked up EC2 %d times", api.calls)
	}
	if n, err := j.RunningJobs(ctx, "by-ip", "i-ip"); err != nil || n != 2 {
		t.Errorf("by-ip: %d, %v; want 2 jobs", n, err)
	}
	if _, err := j.RunningJobs(ctx, "by-ip", "i-ip"); err != nil || api.calls != 1 {
		t.Errorf("second look at i-ip: %v, %d EC2 lookups: want the address remembered", err, api.calls)
	}
	mu.Lock()
	if len(paths) != 3 || paths[1] != "/ip/10.1.2.3/metrics" {
		t.Errorf("paths %v, want the private IP in the second", paths)
	}
	mu.Unlock()
	if _, err := j.RunningJobs(ctx, "by-id", "i-gone"); err == nil {
		t.Error("a failed scrape gave a job count, want an error (unknown, never zero)")
	}
	if _, err := j.RunningJobs(ctx, "by-ip", "i-unknown"); err == nil || !strings.Contains(err.Error(), "private address") {
		t.Errorf("an instance EC2 does not list: %v", err)
	}
	if _, err := j.RunningJobs(ctx, "nope", "i-1"); err == nil {
		t.Error("unknown fleet accepted")
	}
}

// The sweeper backfills the state table's index at once, before its first sweep.
func TestSweeperBackfillsBeforeItsFirstSweep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	s := &sweeper{backfill: backfiller{run: func(context.Context) (int, error) {
		calls++
		cancel() // the sweep's ticker (an hour) never fires: only the backfill ran
		return 2, nil
	}}}
	var logs strings.Builder
	s.run(ctx, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	if calls != 1 {
		t.Fatalf("backfill ran %d times before the first sweep, want 1", calls)
	}
	if !strings.Contains(logs.String(), "are now listed") || !strings.Contains(logs.String(), "count=2") {
		t.Errorf("log = %q; want the count of records listed", logs.String())
	}
}

// The backfill runs every backfillEvery for the worker's first backfillFor (a rolling deploy's
// old tasks write records without the index's attribute meanwhile), then stops; a failure, said
// in the log, keeps it going past that.
func TestBackfillSchedule(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var fail bool
	var ran []time.Duration
	var now time.Time
	b := backfiller{started: t0, run: func(context.Context) (int, error) {
		ran = append(ran, now.Sub(t0))
		if fail {
			return 0, fmt.Errorf("index still being built")
		}
		return 0, nil
	}}
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	at := func(d time.Duration) {
		now = t0.Add(d)
		b.maybe(context.Background(), now, logger)
	}
	for d := time.Duration(0); d <= 70*time.Minute; d += 30 * time.Second { // a sweep every 30 s
		at(d)
	}
	want := []time.Duration{}
	for d := time.Duration(0); d <= backfillFor; d += backfillEvery {
		want = append(want, d)
	}
	if !slices.Equal(ran, want) {
		t.Fatalf("backfill ran at %v, want %v", ran, want)
	}
	// A worker whose backfill fails past the first hour keeps retrying, and says why.
	b, ran, fail = backfiller{started: t0, run: b.run}, nil, true
	at(0)
	at(61 * time.Minute)
	at(62 * time.Minute)
	at(66 * time.Minute)
	if len(ran) != 3 || b.done {
		t.Fatalf("failing backfill ran at %v (done %v); want at 0, 61m and 66m, not done", ran, b.done)
	}
	if !strings.Contains(logs.String(), "index still being built") {
		t.Errorf("log = %q; want the failure", logs.String())
	}
}
