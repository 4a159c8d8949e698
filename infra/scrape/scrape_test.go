package scrape

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// world serves one exposition per instance at /instances/{id}/metrics, like the runner simulator.
type world struct {
	mu     sync.Mutex
	bodies map[string]string
	status map[string]int
	hang   map[string]bool
	srv    *httptest.Server
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{bodies: map[string]string{}, status: map[string]int{}, hang: map[string]bool{}}
	done := make(chan struct{})
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/instances/"), "/metrics")
		w.mu.Lock()
		body, status, hang := w.bodies[id], w.status[id], w.hang[id]
		w.mu.Unlock()
		if hang {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		if status != 0 {
			rw.WriteHeader(status)
		}
		_, _ = rw.Write([]byte(body))
	}))
	t.Cleanup(func() { close(done); w.srv.Close() })
	return w
}

func (w *world) set(id, body string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bodies[id] = body
}

func (w *world) template() string { return w.srv.URL + "/instances/{{.InstanceID}}/metrics" }

func newTestScraper(t *testing.T, cfg Config) *Scraper {
	t.Helper()
	s, err := New(cfg, netguard.HTTPClient(0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const concurrentOnly = `# HELP gitlab_runner_concurrent The current value of concurrent setting
# TYPE gitlab_runner_concurrent gauge
gitlab_runner_concurrent 2
`

func TestScrapeOneSample(t *testing.T) {
	t.Parallel()
	busy := readTestdata(t, "busy.prom")
	tests := []struct {
		name   string
		body   string
		status int
		hang   bool
		want   Result
	}{
		{
			name: "busy runner: running jobs in two stages, unlimited section, queue gauges of unknown age",
			body: busy,
			want: Result{Known: true, Concurrent: 4, Capacity: 4, RunningJobs: 3, BusyJobs: 3, Accepted: true,
				Queue: Queue{Present: true, Size: 12, Depth: 3, Stale: true}},
		},
		{
			name: "fresh idle runner: only the idle series, no queue gauges, no job counter",
			body: concurrentOnly + `# TYPE gitlab_runner_limit gauge
gitlab_runner_limit{runner="aB3dE6gH",system_id="s_1"} 0
# TYPE gitlab_runner_jobs gauge
gitlab_runner_jobs{executor_stage="idle",runner="aB3dE6gH",runner_name="r",stage="idle",state="idle",system_id="s_1"} 0
`,
			want: Result{Known: true, Concurrent: 2, Capacity: 2, Queue: Queue{Stale: true}},
		},
		{
			name: "no runner section at all (registration failed or not run): known, no capacity",
			body: concurrentOnly,
			want: Result{Known: true, Concurrent: 2, Capacity: 0, Queue: Queue{Stale: true}},
		},
		{
			name: "no gitlab_runner_jobs family, a section's limit: its capacity",
			body: concurrentOnly + `gitlab_runner_limit{runner="aB3dE6gH",system_id="s_1"} 0
`,
			want: Result{Known: true, Concurrent: 2, Capacity: 2, Queue: Queue{Stale: true}},
		},
		{
			name: "sections with limits bound capacity below concurrent",
			body: `gitlab_runner_concurrent 10
gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 2
gitlab_runner_limit{runner="bbbbbbbb",system_id="s_1"} 3
`,
			want: Result{Known: true, Concurrent: 10, Capacity: 5, Queue: Queue{Stale: true}},
		},
		{
			name: "limit above concurrent: concurrent wins",
			body: `gitlab_runner_concurrent 2
gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 8
`,
			want: Result{Known: true, Concurrent: 2, Capacity: 2, Queue: Queue{Stale: true}},
		},
		{
			name: "one section's token refused: only the other section's limit counts",
			body: `gitlab_runner_concurrent 10
gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 2
gitlab_runner_limit{runner="bbbbbbbb",system_id="s_1"} 3
gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",status="204",system_id="s_1"} 90
gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="bbbbbbbb",status="403",system_id="s_1"} 12
`,
			want: Result{Known: true, Concurrent: 10, Capacity: 2, Accepted: true, Queue: Queue{Stale: true}},
		},
		{
			name: "a 201 (job given) is a success too",
			body: `gitlab_runner_concurrent 4
gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",status="201",system_id="s_1"} 1
`,
			want: Result{Known: true, Concurrent: 4, Capacity: 4, Accepted: true, Queue: Queue{Stale: true}},
		},
		{
			name: "successes of other endpoints are not job requests",
			body: `gitlab_runner_concurrent 4
gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 0
gitlab_runner_api_request_statuses_total{endpoint="update_job",method="put",runner="aaaaaaaa",status="200",system_id="s_1"} 3
`,
			want: Result{Known: true, Concurrent: 4, Capacity: 4, Queue: Queue{Stale: true}},
		},
		{
			name: "every job request refused (revoked token): no capacity, still known",
			body: `gitlab_runner_concurrent 4
gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 0
gitlab_runner_jobs{executor_stage="idle",runner="aaaaaaaa",runner_name="r",stage="idle",state="idle",system_id="s_1"} 0
gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",status="403",system_id="s_1"} 7
gitlab_runner_api_request_statuses_total{endpoint="update_job",method="put",runner="aaaaaaaa",status="200",system_id="s_1"} 3
`,
			want: Result{Known: true, Concurrent: 4, Capacity: 0, Rejected: true, Queue: Queue{Stale: true}},
		},
		{
			name: "server errors on request_job say nothing about the token",
			body: `gitlab_runner_concurrent 4
gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",status="502",system_id="s_1"} 7
`,
			want: Result{Known: true, Concurrent: 4, Capacity: 4, Queue: Queue{Stale: true}},
		},
		{
			name: "pending and finishing jobs occupy the instance; extra labels are ignored",
			body: `gitlab_runner_concurrent 4
gitlab_runner_jobs{executor_stage="idle",runner="aaaaaaaa",runner_name="r",stage="idle",state="idle",system_id="s_1",shard="blue"} 0
gitlab_runner_jobs{executor_stage="docker_run",runner="aaaaaaaa",runner_name="r",stage="step_script",state="running",system_id="s_1",shard="blue"} 1
gitlab_runner_jobs{executor_stage="docker_cleanup",runner="aaaaaaaa",runner_name="r",stage="cleanup_file_variables",state="success",system_id="s_1",shard="blue"} 1
gitlab_runner_jobs{executor_stage="prepare",runner="aaaaaaaa",runner_name="r",stage="prepare_executor",state="pending",system_id="s_1",shard="blue"} 1
`,
			want: Result{Known: true, Concurrent: 4, Capacity: 4, RunningJobs: 1, BusyJobs: 3, Queue: Queue{Stale: true}},
		},
		{
			name: "untyped samples without TYPE lines are read",
			body: "gitlab_runner_concurrent 3\ngitlab_runner_jobs{state=\"running\"} 2\n",
			want: Result{Known: true, Concurrent: 3, Capacity: 3, RunningJobs: 2, BusyJobs: 2, Queue: Queue{Stale: true}},
		},
		{
			name: "garbled body is unknown, not zero",
			body: "gitlab_runner_concurrent 4\ngitlab_runner_jobs{state=\"running\" 3\n\x00\x01",
			want: Result{Reason: ReasonGarbled},
		},
		{
			name: "HTML error page is unknown",
			body: "<html><body>502 Bad Gateway</body></html>",
			want: Result{Reason: ReasonGarbled},
		},
		{
			name: "not a gitlab-runner: no concurrent",
			body: "go_goroutines 12\n",
			want: Result{Reason: ReasonNoConcurrent},
		},
		{
			name:   "HTTP 500 is unknown",
			body:   "internal error",
			status: http.StatusInternalServerError,
			want:   Result{Reason: ReasonHTTPStatus},
		},
		{
			name: "response above the cap is unknown",
			body: concurrentOnly + strings.Repeat("# padding comment line to exceed the cap\n", 200),
			want: Result{Reason: ReasonTooLarge},
		},
		{
			name: "hung runner is unknown after the timeout",
			hang: true,
			want: Result{Reason: ReasonTimeout},
		},
	}
	w := newWorld(t)
	s := newTestScraper(t, Config{Timeout: 300 * time.Millisecond, MaxBytes: 4 << 10})
	var targets []Target
	for i, tc := range tests {
		id := "i-" + strings.Repeat("0", 16-len(itoa(i))) + itoa(i)
		w.mu.Lock()
		w.bodies[id], w.status[id], w.hang[id] = tc.body, tc.status, tc.hang
		w.mu.Unlock()
		targets = append(targets, Target{InstanceID: id, PrivateIP: "10.0.0.1"})
	}
	results, err := s.Scrape(context.Background(), w.template(), targets)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(tests) {
		t.Fatalf("got %d results, want %d", len(results), len(tests))
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := results[i]
			if got.InstanceID != targets[i].InstanceID {
				t.Fatalf("result %d is for %s, want %s (order must follow targets)", i, got.InstanceID, targets[i].InstanceID)
			}
			if got.Known != tc.want.Known || got.Reason != tc.want.Reason {
				t.Fatalf("known=%v reason=%q (err %v), want known=%v reason=%q", got.Known, got.Reason, got.Err, tc.want.Known, tc.want.Reason)
			}
			if !got.Known {
				if got.Err == nil {
					t.Error("unknown result without an error")
				}
				if got.Capacity != 0 || got.RunningJobs != 0 || got.BusyJobs != 0 {
					t.Errorf("unknown result carries numbers: %+v", got)
				}
				return
			}
			if got.Err != nil {
				t.Errorf("known result with error %v", got.Err)
			}
			if got.Concurrent != tc.want.Concurrent || got.Capacity != tc.want.Capacity ||
				got.RunningJobs != tc.want.RunningJobs || got.BusyJobs != tc.want.BusyJobs || got.Rejected != tc.want.Rejected ||
				got.Accepted != tc.want.Accepted {
				t.Errorf("got concurrent=%d capacity=%d running=%d busy=%d rejected=%v accepted=%v, want %d %d %d %d %v %v",
					got.Concurrent, got.Capacity, got.RunningJobs, got.BusyJobs, got.Rejected, got.Accepted,
					tc.want.Concurrent, tc.want.Capacity, tc.want.RunningJobs, tc.want.BusyJobs, tc.want.Rejected, tc.want.Accepted)
			}
			if got.Queue != tc.want.Queue {
				t.Errorf("queue = %+v, want %+v", got.Queue, tc.want.Queue)
			}
		})
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// exposition renders a gitlab-runner-like page with the given counters.
func exposition(jobsTotal, queueSize, exceeded, ok, rejected int) string {
	var b strings.Builder
	b.WriteString(concurrentOnly)
	b.WriteString(`gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 0` + "\n")
	b.WriteString(`gitlab_runner_jobs_total{runner="aaaaaaaa",runner_name="r",system_id="s_1"} ` + itoa(jobsTotal) + "\n")
	b.WriteString(`gitlab_runner_job_queue_size{runner="aaaaaaaa",runner_name="r",system_id="s_1"} ` + itoa(queueSize) + "\n")
	b.WriteString(`gitlab_runner_job_queue_depth{runner="aaaaaaaa",runner_name="r",system_id="s_1"} 1` + "\n")
	b.WriteString(`gitlab_runner_acceptable_job_queuing_duration_exceeded_total{runner="aaaaaaaa",runner_name="r",system_id="s_1"} ` + itoa(exceeded) + "\n")
	b.WriteString(`gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",status="204",system_id="s_1"} ` + itoa(ok) + "\n")
	if rejected > 0 {
		b.WriteString(`gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",status="403",system_id="s_1"} ` + itoa(rejected) + "\n")
	}
	return b.String()
}

// A runner first read (a worker restarted, a scraper of its own) after its token was revoked
// shows the successes it had before and the refusals since: which came last cannot be told from
// one sample, so it is not Accepted (the cycle's health) until a later sample shows its requests.
func TestFirstSampleWithRefusalsIsNotAccepted(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := newTestScraper(t, Config{})
	clock := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	for _, tc := range []struct {
		name         string
		next         string
		wantAccepted bool
		wantRejected bool
	}{
		{"refused since", exposition(10, 0, 0, 100, 9), false, true},
		{"no request since", exposition(10, 0, 0, 100, 4), false, false},
		{"served since", exposition(10, 0, 0, 130, 4), true, false},
	} {
		target := []Target{{InstanceID: "i-" + strings.ReplaceAll(tc.name, " ", "-")}}
		read := func(body string) Result {
			t.Helper()
			w.set(target[0].InstanceID, body)
			rs, err := s.Scrape(context.Background(), w.template(), target)
			if err != nil || !rs[0].Known {
				t.Fatalf("%s: %v %v", tc.name, err, rs[0].Err)
			}
			return rs[0]
		}
		if r := read(exposition(10, 0, 0, 100, 4)); r.Accepted || r.Rejected {
			t.Errorf("%s: first sample with 204s and 403s: accepted=%v rejected=%v, want neither", tc.name, r.Accepted, r.Rejected)
		}
		clock = clock.Add(time.Minute)
		if r := read(tc.next); r.Accepted != tc.wantAccepted || r.Rejected != tc.wantRejected {
			t.Errorf("%s: accepted=%v rejected=%v, want %v, %v", tc.name, r.Accepted, r.Rejected, tc.wantAccepted, tc.wantRejected)
		}
	}
}

// TestScrapeAcrossTicks checks what needs the previous sample: the queuing-exceeded rate, the
// queue gauges' age and staleness, and refusals counted since the previous sample only.
func TestScrapeAcrossTicks(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := newTestScraper(t, Config{QueueStaleAfter: 3 * time.Minute})
	clock := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	target := []Target{{InstanceID: "i-0aaaaaaaaaaaaaaa1"}}
	tick := func(body string) Result {
		t.Helper()
		w.set(target[0].InstanceID, body)
		rs, err := s.Scrape(context.Background(), w.template(), target)
		if err != nil {
			t.Fatal(err)
		}
		if !rs[0].Known {
			t.Fatalf("unknown: %v", rs[0].Err)
		}
		return rs[0]
	}

	steps := []struct {
		advance time.Duration
		body    string
		check   func(t *testing.T, r Result)
	}{
		{0, exposition(10, 7, 2, 100, 0), func(t *testing.T, r Result) {
			if r.Queue.HasRate || r.Queue.AgeKnown || !r.Queue.Stale {
				t.Errorf("first sample: want no rate, unknown age, stale; got %+v", r.Queue)
			}
			if r.Rejected || !r.Accepted {
				t.Errorf("first sample with only 204s: rejected=%v accepted=%v, want accepted", r.Rejected, r.Accepted)
			}
		}},
		{time.Minute, exposition(13, 5, 8, 130, 0), func(t *testing.T, r Result) {
			if !r.Queue.HasRate || r.Queue.ExceededPerSecond != 6.0/60 {
				t.Errorf("rate = %v (has %v), want 0.1/s", r.Queue.ExceededPerSecond, r.Queue.HasRate)
			}
			if !r.Queue.AgeKnown || r.Queue.Age != time.Minute || r.Queue.Stale || r.Queue.Size != 5 {
				t.Errorf("after a pickup: want fresh gauges at most 1m old, got %+v", r.Queue)
			}
		}},
		{2 * time.Minute, exposition(13, 5, 8, 170, 0), func(t *testing.T, r Result) {
			if r.Queue.ExceededPerSecond != 0 || !r.Queue.HasRate {
				t.Errorf("rate = %v, want 0", r.Queue.ExceededPerSecond)
			}
			if r.Queue.Age != 3*time.Minute || r.Queue.Stale {
				t.Errorf("no pickup for 2m: want age 3m, not yet stale; got %+v", r.Queue)
			}
		}},
		{time.Minute, exposition(13, 5, 8, 170, 4), func(t *testing.T, r Result) {
			if r.Queue.Age != 4*time.Minute || !r.Queue.Stale {
				t.Errorf("no pickup for 3m: want age 4m, stale; got %+v", r.Queue)
			}
			if !r.Rejected || r.Capacity != 0 || r.Accepted {
				t.Errorf("only 403s since the previous sample: want rejected, not accepted, with no capacity, got rejected=%v accepted=%v capacity=%d", r.Rejected, r.Accepted, r.Capacity)
			}
		}},
		{time.Minute, exposition(13, 5, 8, 175, 4), func(t *testing.T, r Result) {
			if r.Rejected || r.Capacity != 2 || !r.Accepted {
				t.Errorf("accepted again: got rejected=%v accepted=%v capacity=%d", r.Rejected, r.Accepted, r.Capacity)
			}
		}},
		{time.Minute, exposition(1, 9, 1, 3, 0), func(t *testing.T, r Result) {
			// The runner restarted: counters went down. The rate counts from zero.
			if !r.Queue.HasRate || r.Queue.ExceededPerSecond != 1.0/60 {
				t.Errorf("after a restart: rate = %v, want 1/60", r.Queue.ExceededPerSecond)
			}
			if !r.Queue.AgeKnown || r.Queue.Age != time.Minute {
				t.Errorf("after a restart the gauges are new: %+v", r.Queue)
			}
		}},
		{30 * time.Minute, exposition(1, 9, 3, 3, 0), func(t *testing.T, r Result) {
			if r.Queue.HasRate {
				t.Errorf("a 30m gap is beyond the rate window, got a rate %v", r.Queue.ExceededPerSecond)
			}
			if !r.Queue.Stale {
				t.Errorf("gauges 31m old must be stale: %+v", r.Queue)
			}
		}},
	}
	for i, st := range steps {
		clock = clock.Add(st.advance)
		r := tick(st.body)
		t.Run(itoa(i), func(t *testing.T) { st.check(t, r) })
	}
}

// requestJobs renders a one-section page with the given request_job counts by status.
func requestJobs(jobs int, statuses ...[2]int) string {
	var b strings.Builder
	b.WriteString(concurrentOnly)
	b.WriteString(`gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 0` + "\n")
	if jobs > 0 {
		b.WriteString(`gitlab_runner_jobs{runner="aaaaaaaa",state="running"} ` + itoa(jobs) + "\n")
	}
	for _, st := range statuses {
		b.WriteString(`gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",status="` +
			itoa(st[0]) + `",system_id="s_1"} ` + itoa(st[1]) + "\n")
	}
	return b.String()
}

// TestAcceptedMeansAJobRequestSucceeded follows one runner from boot: Accepted (DESIGN.md's
// health) needs a request_job answered 201 or 204; metrics that merely answer, or job requests
// failing with server errors, are not enough, yet neither makes the runner Rejected (it keeps its
// capacity). A busy runner making no requests stays Accepted; a refused token is neither
// Accepted nor forgotten when the runner is read again before its next request.
func TestAcceptedMeansAJobRequestSucceeded(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := newTestScraper(t, Config{})
	clock := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	target := []Target{{InstanceID: "i-0aaaaaaaaaaaaaaa2"}}
	steps := []struct {
		name               string
		advance            time.Duration
		body               string
		accepted, rejected bool
		capacity           int
	}{
		{"booted, no job request yet", 0, requestJobs(0), false, false, 2},
		{"job requests answered 502 only", time.Minute, requestJobs(0, [2]int{502, 4}), false, false, 2},
		{"a 204: GitLab accepts the token", time.Minute, requestJobs(0, [2]int{502, 4}, [2]int{204, 1}), true, false, 2},
		{"every slot busy, no request since", time.Minute, requestJobs(2, [2]int{502, 4}, [2]int{204, 1}, [2]int{201, 2}), true, false, 2},
		{"still busy, still no request", time.Minute, requestJobs(2, [2]int{502, 4}, [2]int{204, 1}, [2]int{201, 2}), true, false, 2},
		{"token revoked: only 403s since", time.Minute, requestJobs(0, [2]int{502, 4}, [2]int{204, 1}, [2]int{201, 2}, [2]int{403, 9}), false, true, 0},
		{"read again before its next request", time.Second, requestJobs(0, [2]int{502, 4}, [2]int{204, 1}, [2]int{201, 2}, [2]int{403, 9}), false, true, 0},
		{"new token: 204s again", time.Minute, requestJobs(0, [2]int{502, 4}, [2]int{204, 7}, [2]int{201, 2}, [2]int{403, 9}), true, false, 2},
		{"runner restarted, no request yet", time.Minute, requestJobs(0), false, false, 2},
	}
	for _, st := range steps {
		clock = clock.Add(st.advance)
		w.set(target[0].InstanceID, st.body)
		rs, err := s.Scrape(context.Background(), w.template(), target)
		if err != nil {
			t.Fatal(err)
		}
		r := rs[0]
		if !r.Known {
			t.Fatalf("%s: unknown: %v", st.name, r.Err)
		}
		if r.Accepted != st.accepted || r.Rejected != st.rejected || r.Capacity != st.capacity {
			t.Errorf("%s: accepted=%v rejected=%v capacity=%d, want %v %v %d",
				st.name, r.Accepted, r.Rejected, r.Capacity, st.accepted, st.rejected, st.capacity)
		}
		if inst := r.Instance(); inst.Healthy != !st.rejected {
			t.Errorf("%s: fleet.Instance Healthy=%v: the scaling policy's health is 'not rejected'", st.name, inst.Healthy)
		}
	}
}

func TestScrapeRefusesNonLoopbackAndBadInput(t *testing.T) {
	t.Parallel()
	s := newTestScraper(t, Config{Timeout: time.Second})
	rs, err := s.Scrape(context.Background(), "http://{{.PrivateIP}}:9252/metrics",
		[]Target{{InstanceID: "i-1", PrivateIP: "10.0.0.9"}})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Known || rs[0].Reason != ReasonConnect {
		t.Fatalf("scrape of a 10.x address: known=%v reason=%q, want refused by netguard", rs[0].Known, rs[0].Reason)
	}
	if _, err := s.Scrape(context.Background(), "http://{{.Nope", nil); err == nil {
		t.Error("a template that does not parse was accepted")
	}
	if err := CheckTemplate("http://{{.PrivateIP}}:9252/metrics"); err != nil {
		t.Errorf("default template refused: %v", err)
	}
	if err := CheckTemplate("http://{{.Address}}/metrics"); err == nil {
		t.Error("a template naming an unknown field was accepted")
	}
	if _, err := New(Config{Concurrency: -1, Timeout: -1}, netguard.HTTPClient(0)); err == nil || !strings.Contains(err.Error(), "concurrency") || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("invalid config: err = %v, want both problems", err)
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("nil client accepted")
	}
}

// An instance EC2 no longer lists has no private address: a template using it would name no
// host, and Go would dial this host itself, whose answer (here a runner listening on loopback)
// must not be credited to the instance.
func TestScrapeWithoutAnAddressIsUnknown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, concurrentOnly)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	s := newTestScraper(t, Config{Timeout: time.Second})
	rs, err := s.Scrape(context.Background(), fmt.Sprintf("http://{{.PrivateIP}}:%d/metrics", port),
		[]Target{{InstanceID: "i-gone", PrivateIP: ""}, {InstanceID: "i-here", PrivateIP: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Known || rs[0].Reason != ReasonNoAddress {
		t.Errorf("no address: known=%v reason=%q, want unknown, %q", rs[0].Known, rs[0].Reason, ReasonNoAddress)
	}
	if !rs[1].Known {
		t.Errorf("the same template with an address: %+v, want known", rs[1])
	}
}

func TestScrapeCanceledContextMarksRestUnknown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := newTestScraper(t, Config{Concurrency: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	targets := make([]Target, 20)
	for i := range targets {
		targets[i] = Target{InstanceID: "i-" + itoa(i)}
		w.set(targets[i].InstanceID, concurrentOnly)
	}
	rs, err := s.Scrape(ctx, w.template(), targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Known {
			t.Fatalf("%s known after cancel", r.InstanceID)
		}
		if r.Reason != ReasonCanceled {
			t.Errorf("%s: reason %q, want canceled", r.InstanceID, r.Reason)
		}
	}
}

// A target that timed out is started first on the next scrape, so its wait overlaps the others.
func TestScrapeStartsLastTimedOutFirst(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var arrivals []string
	hung := "i-0000000000000hung"
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/instances/"), "/metrics")
		mu.Lock()
		arrivals = append(arrivals, id)
		mu.Unlock()
		if id == hung {
			<-r.Context().Done()
			return
		}
		_, _ = rw.Write([]byte(concurrentOnly))
	}))
	t.Cleanup(srv.Close)
	s := newTestScraper(t, Config{Concurrency: 1, Timeout: 100 * time.Millisecond})
	targets := []Target{{InstanceID: "i-000000000000000a"}, {InstanceID: hung}, {InstanceID: "i-000000000000000c"}}
	tmpl := srv.URL + "/instances/{{.InstanceID}}/metrics"
	for round := range 2 {
		mu.Lock()
		arrivals = nil
		mu.Unlock()
		rs, err := s.Scrape(context.Background(), tmpl, targets)
		if err != nil {
			t.Fatal(err)
		}
		if rs[1].InstanceID != hung || rs[1].Reason != ReasonTimeout || !rs[0].Known || !rs[2].Known {
			t.Fatalf("round %d: results out of order or wrong: %+v", round, rs)
		}
		mu.Lock()
		first := arrivals[0]
		mu.Unlock()
		want := targets[0].InstanceID
		if round == 1 {
			want = hung
		}
		if first != want {
			t.Errorf("round %d: first request for %s, want %s", round, first, want)
		}
	}
}

func TestResultInstance(t *testing.T) {
	t.Parallel()
	unknown := Result{InstanceID: "i-1", Reason: ReasonTimeout}.Instance()
	if !unknown.Unknown || unknown.UnknownReason != "timeout" || unknown.ID != "i-1" || unknown.Healthy {
		t.Errorf("unknown result: %+v", unknown)
	}
	known := Result{InstanceID: "i-2", Known: true, Capacity: 4, RunningJobs: 1, BusyJobs: 2, Rejected: true,
		Queue: Queue{Present: true, Size: 5, Depth: 2, Age: time.Minute, AgeKnown: true, Stale: true, ExceededPerSecond: 0.5, HasRate: true}}.Instance()
	if known.Unknown || known.Healthy || known.Capacity != 4 || known.RunningJobs != 2 || known.QueueSize != 5 ||
		known.QueueDepth != 2 || known.QueueAge != time.Minute || known.QueueStale || known.QueuingExceededRate != 0.5 {
		t.Errorf("known result: %+v (busy jobs must count as running; rejected is unhealthy; age is the policy's call)", known)
	}
	if absent := (Result{Known: true, Queue: Queue{AgeKnown: true}}).Instance(); !absent.QueueStale {
		t.Error("absent queue gauges are not stale")
	}
}

func TestCompactKeepsReadLabelsOnly(t *testing.T) {
	t.Parallel()
	tests := []struct{ line, want string }{
		{`gitlab_runner_jobs{executor_stage="docker_run",runner="xRq7",runner_name="a, \"b\"",stage="step_script",state="running",system_id="s_1"} 2` + "\n",
			`gitlab_runner_jobs{state="running"} 2` + "\n"},
		{`gitlab_runner_job_queue_size{runner="r",runner_name="n",system_id="s"} 12 1700000000000` + "\n",
			`gitlab_runner_job_queue_size 12 1700000000000` + "\n"},
		{`gitlab_runner_concurrent 4` + "\n", ""},         // no labels: passed on unchanged
		{`gitlab_runner_jobs{state="running"` + "\n", ""}, // unterminated: left for the parser to refuse
	}
	for _, tc := range tests {
		var b bytes.Buffer
		name := tc.line[:strings.IndexAny(tc.line, "{ ")]
		ok := compact(&b, []byte(tc.line), len(name), keptLabels[name])
		if tc.want == "" {
			if ok || b.Len() != 0 {
				t.Errorf("compact(%q) rewrote it to %q", tc.line, b.String())
			}
			continue
		}
		if !ok || b.String() != tc.want {
			t.Errorf("compact(%q) = %q, %v; want %q", tc.line, b.String(), ok, tc.want)
		}
	}
}

// A garbled page's error names lines, never their content (a line may carry a short token).
func TestGarbledErrorQuotesNoContent(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := newTestScraper(t, Config{})
	bodies := []string{
		"gitlab_runner_concurrent 4\ngitlab_runner_limit{runner=\"glrtSECRET\",system_id=\"s\"} x1\n",
		"gitlab_runner_concurrent 4\n<glrtSECRET>\n",
	}
	for i, body := range bodies {
		id := "i-" + itoa(i)
		w.set(id, body)
		rs, err := s.Scrape(context.Background(), w.template(), []Target{{InstanceID: id}})
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Reason != ReasonGarbled {
			t.Errorf("body %d: reason %q, want garbled", i, rs[0].Reason)
		}
		if strings.Contains(rs[0].Err.Error(), "SECRET") {
			t.Errorf("body %d: error quotes the page: %v", i, rs[0].Err)
		}
	}
}

// TestConcurrentScrapesOfOneInstance reads the same runners from two goroutines at once (the
// Scraper is documented safe for concurrent use): under -race, the per-instance memory must not
// be written while another scrape reads it, and every result stays right.
func TestConcurrentScrapesOfOneInstance(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := newTestScraper(t, Config{})
	var targets []Target
	for i := range 8 {
		id := "i-0c" + strings.Repeat("0", 14) + itoa(i)
		w.set(id, requestJobs(1, [2]int{204, 3 + i}))
		targets = append(targets, Target{InstanceID: id})
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				rs, err := s.Scrape(context.Background(), w.template(), targets)
				if err != nil {
					errs <- err.Error()
					return
				}
				for _, r := range rs {
					if !r.Known || !r.Accepted || r.Rejected || r.BusyJobs != 1 {
						errs <- fmt.Sprintf("%s: known=%v accepted=%v rejected=%v busy=%d", r.InstanceID, r.Known, r.Accepted, r.Rejected, r.BusyJobs)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
