package drainadapter

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// queueStub keeps the last published message, or refuses with err. One goroutine uses it.
type queueStub struct {
	topic string
	got   []*message.Message
	err   error
}

func (q *queueStub) Publish(topic string, msgs ...*message.Message) error {
	if q.err != nil {
		return q.err
	}
	q.topic = topic
	q.got = append(q.got, msgs...)
	return nil
}

func (q *queueStub) Close() error { return nil }

func TestFollowUpsRoundDelaysUpToWholeSeconds(t *testing.T) {
	q := &queueStub{}
	step := messages.DrainStep{Fleet: "docker", InstanceID: "i-0abc", ActionToken: "tok", GroupName: "asg", Attempt: 1, Step: "watch"}
	cases := map[time.Duration]string{time.Nanosecond: "1", time.Second: "1", 899*time.Second + 1: "900", 15*time.Minute + 1: "900", -time.Second: ""}
	for delay, want := range cases {
		q.got = nil
		if err := FollowUps(q, "q-url").Schedule(context.Background(), step, delay); err != nil {
			t.Fatalf("delay %s: %v", delay, err)
		}
		if len(q.got) != 1 || q.topic != "q-url" {
			t.Fatalf("delay %s: %d messages on %q", delay, len(q.got), q.topic)
		}
		m := q.got[0]
		if got := m.Metadata.Get(sqs.MetaDelaySeconds); got != want {
			t.Errorf("delay %s: %s=%q, want %q", delay, sqs.MetaDelaySeconds, got, want)
		}
		parsed, err := messages.Parse(m.Payload)
		if err != nil {
			t.Fatalf("delay %s: body does not parse: %v", delay, err)
		}
		got, ok := parsed.Payload.(*messages.DrainStep)
		if !ok || got.ID == "" || m.UUID == "" {
			t.Fatalf("delay %s: payload %T %+v, uuid %q", delay, parsed.Payload, parsed.Payload, m.UUID)
		}
		got.ID = ""
		if *got != step {
			t.Errorf("delay %s: step %+v, want %+v", delay, *got, step)
		}
	}
}

func TestFollowUpsSayWhatFailed(t *testing.T) {
	refused := errors.New("queue gone")
	q := &queueStub{err: refused}
	step := messages.DrainStep{Fleet: "docker", InstanceID: "i-0abc", ActionToken: "tok", GroupName: "asg"}
	err := FollowUps(q, "lifecycle").Schedule(context.Background(), step, 0)
	if !errors.Is(err, refused) || !strings.Contains(err.Error(), "publishing a drain follow-up to lifecycle") {
		t.Errorf("publish failure: %v", err)
	}
	q.err = nil
	err = FollowUps(q, "lifecycle").Schedule(context.Background(), messages.DrainStep{Fleet: "docker"}, 0)
	var inv *messages.InvalidError
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), "encoding a drain follow-up") || len(q.got) != 0 {
		t.Errorf("invalid step: %v, %d published", err, len(q.got))
	}
}

func TestBusyJobsCountsOrSaysWhyNot(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/i-busy" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("# TYPE gitlab_runner_concurrent gauge\ngitlab_runner_concurrent 3\n" +
			"# TYPE gitlab_runner_jobs gauge\n" +
			`gitlab_runner_jobs{runner="a",state="running",executor_stage="",stage=""} 2` + "\n"))
	}))
	t.Cleanup(srv.Close)
	s, err := scrape.New(scrape.Config{}, netguard.HTTPClient(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tmpl := srv.URL + "/{{.InstanceID}}"
	if n, err := BusyJobs(ctx, s, tmpl, scrape.Target{InstanceID: "i-busy"}); err != nil || n != 2 {
		t.Errorf("busy runner: %d jobs, %v; want 2", n, err)
	}
	n, err := BusyJobs(ctx, s, tmpl, scrape.Target{InstanceID: "i-down"})
	if err == nil || n != 0 || !strings.Contains(err.Error(), "runner metrics of i-down: "+string(scrape.ReasonHTTPStatus)) {
		t.Errorf("runner answering 503: %d jobs, %v; want an error naming the instance and why", n, err)
	}
	if _, err := BusyJobs(ctx, s, srv.URL+"/{{.Nope", scrape.Target{InstanceID: "i-busy"}); err == nil {
		t.Error("a template that does not parse gave a job count")
	}
}
