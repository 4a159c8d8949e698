package runnersim_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds how long a test waits for a state it expects; tests assert the state, never
// how fast it came.
const waitLimit = 10 * time.Second

// fakeLog stands in for the emulator's /_runnerfleet/log.
type fakeLog struct {
	mu     sync.Mutex
	events []map[string]any
}

func (f *fakeLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/_runnerfleet/log" {
		http.NotFound(w, r)
		return
	}
	var ev map[string]any
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// kinds lists "kind:job_id" (or "kind:open") of the events about one instance, in order.
func (f *fakeLog) kinds(instanceID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, ev := range f.events {
		if ev["instance_id"] != instanceID {
			continue
		}
		switch ev["kind"] {
		case "runner.intake":
			out = append(out, fmt.Sprintf("runner.intake:%v", ev["open"]))
		default:
			out = append(out, fmt.Sprintf("%v:%v", ev["kind"], ev["job_id"]))
		}
	}
	return out
}

type world struct {
	sim    *runnersim.Sim
	log    *fakeLog
	client *http.Client
}

func start(t *testing.T, cfg runnersim.Config) *world {
	t.Helper()
	fl := &fakeLog{}
	logSrv := httptest.NewServer(fl)
	t.Cleanup(logSrv.Close)
	cfg.EmulatorURL = logSrv.URL
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	sim, err := runnersim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("closing: %v", err)
		}
	})
	return &world{sim: sim, log: fl, client: netguard.HTTPClient(5 * time.Second)}
}

func (w *world) call(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.sim.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (w *world) register(t *testing.T, id string) {
	t.Helper()
	if code := w.call(t, "POST", "/instances", map[string]any{"instance_id": id, "group": "g", "private_ip": "10.0.0.1", "launch_template_version": 1}, nil); code != 200 {
		t.Fatalf("register %s: status %d", id, code)
	}
}

func (w *world) jobs(t *testing.T, jobs ...runnersim.Job) {
	t.Helper()
	if code := w.call(t, "POST", "/jobs", map[string]any{"jobs": jobs}, nil); code != 200 {
		t.Fatalf("queue jobs: status %d", code)
	}
}

func (w *world) action(t *testing.T, id, action string) runnersim.ActionResult {
	t.Helper()
	var res runnersim.ActionResult
	if code := w.call(t, "POST", "/instances/"+id+"/actions/"+action, nil, &res); code != 200 {
		t.Fatalf("%s on %s: status %d", action, id, code)
	}
	return res
}

func (w *world) state(t *testing.T) runnersim.State {
	t.Helper()
	var st runnersim.State
	w.call(t, "GET", "/state", nil, &st)
	return st
}

// waitFor polls the state until cond holds; it fails with the last state otherwise.
func (w *world) waitFor(t *testing.T, what string, cond func(runnersim.State) bool) runnersim.State {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		st := w.state(t)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; last state: %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func jobIs(id, state string) func(runnersim.State) bool {
	return func(st runnersim.State) bool { return st.Jobs[id].State == state }
}

func (w *world) metrics(t *testing.T, id string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := w.client.Get(w.sim.URL() + "/instances/" + id + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse with expfmt: %v", err)
	}
	return mfs
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// value sums the family's samples whose labels include want.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range mf.GetMetric() {
		ls := labels(m)
		for k, v := range want {
			if ls[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

func TestMetricsFollowGitlabRunnerAndParse(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{Concurrent: 3})
	w.register(t, "i-metrics")
	w.jobs(t, runnersim.Job{ID: "m1", DurationMS: 60_000}, runnersim.Job{ID: "m2", DurationMS: 60_000})
	w.waitFor(t, "both jobs running", func(st runnersim.State) bool {
		return st.Jobs["m1"].State == runnersim.JobRunning && st.Jobs["m2"].State == runnersim.JobRunning
	})
	mfs := w.metrics(t, "i-metrics")

	if v, ok := value(mfs, "gitlab_runner_concurrent", nil); !ok || v != 3 {
		t.Errorf("gitlab_runner_concurrent = %v (present %v), want 3", v, ok)
	}
	limit := mfs["gitlab_runner_limit"]
	if limit == nil || len(limit.GetMetric()) != 1 {
		t.Fatalf("gitlab_runner_limit missing: %v", limit)
	}
	for _, l := range []string{"runner", "runner_name", "system_id"} {
		if labels(limit.GetMetric()[0])[l] == "" {
			t.Errorf("gitlab_runner_limit lacks label %s", l)
		}
	}
	if v, _ := value(mfs, "gitlab_runner_jobs", map[string]string{"state": "running", "runner_name": "i-metrics"}); v != 2 {
		t.Errorf("running jobs = %v, want 2", v)
	}
	if _, ok := value(mfs, "gitlab_runner_jobs", map[string]string{"state": "idle", "stage": "idle", "executor_stage": "idle"}); !ok {
		t.Error("the idle series of gitlab_runner_jobs is missing")
	}
	if v, _ := value(mfs, "gitlab_runner_api_request_statuses_total", map[string]string{"endpoint": "request_job", "status": "201", "method": "post"}); v != 2 {
		t.Errorf("request_job 201 = %v, want 2", v)
	}
	if _, ok := value(mfs, "gitlab_runner_api_request_statuses_total", map[string]string{"endpoint": "request_job", "status": "204"}); !ok {
		t.Error("request_job 204 (no job) is missing although the runner polled an empty queue")
	}
	for _, name := range []string{"gitlab_runner_job_queue_size", "gitlab_runner_job_queue_depth", "gitlab_runner_acceptable_job_queuing_duration_exceeded_total", "gitlab_runner_jobs_total"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s missing after a pick-up", name)
		}
	}
	if got := mfs["gitlab_runner_jobs"].GetHelp(); got != "The current number of running builds." {
		t.Errorf("help text %q differs from gitlab-runner's", got)
	}
}

func TestQueueGaugesOnlyChangeOnPickUp(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{Concurrent: 1})
	w.register(t, "i-stale")
	if _, ok := w.metrics(t, "i-stale")["gitlab_runner_job_queue_size"]; ok {
		t.Fatal("gitlab_runner_job_queue_size present before any pick-up; gitlab-runner sets it only in addBuild")
	}
	w.jobs(t, runnersim.Job{ID: "s1", DurationMS: 60_000})
	w.waitFor(t, "s1 running", jobIs("s1", runnersim.JobRunning))
	before, _ := value(w.metrics(t, "i-stale"), "gitlab_runner_job_queue_size", nil)
	w.jobs(t, runnersim.Job{ID: "s2", DurationMS: 1}, runnersim.Job{ID: "s3", DurationMS: 1}, runnersim.Job{ID: "s4", DurationMS: 1})
	st := w.state(t)
	if len(st.Queued) != 3 {
		t.Fatalf("queued = %v, want 3 jobs waiting (the only runner is full)", st.Queued)
	}
	after, _ := value(w.metrics(t, "i-stale"), "gitlab_runner_job_queue_size", nil)
	if before != 1 || after != before {
		t.Errorf("queue size before=%v after=%v; want 1 and unchanged while 3 jobs wait (stale until next pick-up)", before, after)
	}
}

func TestStopIntakeLetsRunningJobFinishAndTakesNoNewJob(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{Concurrent: 2})
	w.register(t, "i-drain")
	w.jobs(t, runnersim.Job{ID: "d1", DurationMS: 300})
	w.waitFor(t, "d1 running", jobIs("d1", runnersim.JobRunning))

	res := w.action(t, "i-drain", runnersim.ActionStopIntake)
	if res.ExitCode != 0 {
		t.Fatalf("stop-intake exit %d: %s", res.ExitCode, res.Stderr)
	}
	st := w.state(t)
	in, _ := st.Instance("i-drain")
	if in.IntakeOpen || in.Process != runnersim.ProcessStopping || len(in.Running) != 1 {
		t.Fatalf("after stop-intake: %+v; want intake closed, stopping, d1 still running", in)
	}
	w.jobs(t, runnersim.Job{ID: "d2", DurationMS: 1})
	st = w.waitFor(t, "d1 finished", jobIs("d1", runnersim.JobFinished))
	in, _ = st.Instance("i-drain")
	if in.Process != runnersim.ProcessExited {
		t.Errorf("process = %s after its last job, want exited", in.Process)
	}
	if st.Jobs["d2"].State != runnersim.JobQueued {
		t.Errorf("d2 = %+v, want still queued: a stopped runner takes no job", st.Jobs["d2"])
	}
	if in.Started != 1 || in.Killed != 0 {
		t.Errorf("started=%d killed=%d, want 1 and 0", in.Started, in.Killed)
	}
	// Repeating stop-intake (a duplicate command) still succeeds.
	if res := w.action(t, "i-drain", runnersim.ActionStopIntake); res.ExitCode != 0 {
		t.Errorf("second stop-intake exit %d", res.ExitCode)
	}
	// The emulator's log saw the transitions in order.
	want := []string{"runner.intake:true", "job.start:d1", "runner.intake:false", "job.end:d1"}
	deadline := time.Now().Add(waitLimit)
	for got := w.log.kinds("i-drain"); strings.Join(got, ",") != strings.Join(want, ","); got = w.log.kinds("i-drain") {
		if time.Now().After(deadline) {
			t.Fatalf("log = %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// An exited runner's metrics no longer answer.
	if resp, err := w.client.Get(w.sim.URL() + "/instances/i-drain/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("metrics of an exited runner answered %d; want no answer", resp.StatusCode)
	}
}

func TestStatusReportsRunningJobs(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{})
	w.register(t, "i-status")
	w.jobs(t, runnersim.Job{ID: "a", DurationMS: 60_000}, runnersim.Job{ID: "b", DurationMS: 60_000})
	w.waitFor(t, "a and b running", func(st runnersim.State) bool {
		return jobIs("a", runnersim.JobRunning)(st) && jobIs("b", runnersim.JobRunning)(st)
	})
	res := w.action(t, "i-status", runnersim.ActionStatus)
	var rep runnersim.StatusReport
	if err := json.Unmarshal([]byte(res.Stdout), &rep); err != nil {
		t.Fatalf("status stdout %q is not JSON: %v", res.Stdout, err)
	}
	if res.ExitCode != 0 || rep.RunningJobs != 2 || rep.Process != runnersim.ProcessRunning || !rep.IntakeOpen {
		t.Errorf("status = %+v (exit %d); want 2 running jobs, running, intake open", rep, res.ExitCode)
	}
	if strings.Join(rep.JobIDs, ",") != "a,b" && strings.Join(rep.JobIDs, ",") != "b,a" {
		t.Errorf("job ids = %v", rep.JobIDs)
	}
}

func TestTerminateKillsAndCountsRemainingJobs(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{})
	w.register(t, "i-kill")
	w.jobs(t, runnersim.Job{ID: "k1", DurationMS: 60_000})
	w.waitFor(t, "k1 running", jobIs("k1", runnersim.JobRunning))
	var out struct {
		Killed int `json:"killed"`
	}
	if code := w.call(t, "DELETE", "/instances/i-kill", nil, &out); code != 200 || out.Killed != 1 {
		t.Fatalf("DELETE: status %d killed %d; want 200 and 1", code, out.Killed)
	}
	st := w.state(t)
	in, _ := st.Instance("i-kill")
	if st.Jobs["k1"].State != runnersim.JobKilled || in.Killed != 1 || st.Totals.Killed != 1 || in.Process != runnersim.ProcessTerminated {
		t.Errorf("after termination: job %+v, instance %+v, totals %+v", st.Jobs["k1"], in, st.Totals)
	}
	// A second termination kills nothing more; actions on a terminated instance fail.
	if code := w.call(t, "DELETE", "/instances/i-kill", nil, &out); code != 200 || out.Killed != 0 {
		t.Errorf("second DELETE: status %d killed %d; want 200 and 0", code, out.Killed)
	}
	if code := w.call(t, "POST", "/instances/i-kill/actions/status", nil, nil); code != 404 {
		t.Errorf("status on a terminated instance: %d, want 404", code)
	}
	if code := w.call(t, "DELETE", "/instances/i-never", nil, nil); code != 404 {
		t.Errorf("DELETE of an unknown instance: %d, want 404", code)
	}
}

func TestUnregisterRefusedWhileRunnerRuns(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{})
	w.register(t, "i-unreg")
	w.jobs(t, runnersim.Job{ID: "u1", DurationMS: 200})
	w.waitFor(t, "u1 running", jobIs("u1", runnersim.JobRunning))
	if res := w.action(t, "i-unreg", runnersim.ActionUnregister); res.ExitCode == 0 || res.Stderr == "" {
		t.Fatalf("unregister while running: %+v; want a non-zero exit with a reason", res)
	}
	w.action(t, "i-unreg", runnersim.ActionStopIntake)
	if res := w.action(t, "i-unreg", runnersim.ActionUnregister); res.ExitCode == 0 {
		t.Fatalf("unregister while the last job runs: %+v; want refused", res)
	}
	w.waitFor(t, "runner exited", func(st runnersim.State) bool {
		in, _ := st.Instance("i-unreg")
		return in.Process == runnersim.ProcessExited
	})
	if res := w.action(t, "i-unreg", runnersim.ActionUnregister); res.ExitCode != 0 {
		t.Fatalf("unregister after exit: %+v; want success", res)
	}
	in, _ := w.state(t).Instance("i-unreg")
	if !in.Unregistered {
		t.Error("instance not marked unregistered")
	}
}

func TestRejectedTokenShows403AndFailsUnregister(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{})
	w.register(t, "i-token")
	if code := w.call(t, "POST", "/instances/i-token/fault", map[string]string{"mode": "reject-token"}, nil); code != 200 {
		t.Fatalf("fault: %d", code)
	}
	w.jobs(t, runnersim.Job{ID: "t1", DurationMS: 1})
	w.waitFor(t, "a 403 job request", func(st runnersim.State) bool {
		in, _ := st.Instance("i-token")
		return in.Requests["403"] > 0
	})
	mfs := w.metrics(t, "i-token")
	if v, _ := value(mfs, "gitlab_runner_api_request_statuses_total", map[string]string{"endpoint": "request_job", "status": "403"}); v < 1 {
		t.Errorf("403s = %v, want at least 1", v)
	}
	if _, ok := value(mfs, "gitlab_runner_concurrent", nil); !ok {
		t.Error("gitlab_runner_concurrent missing: it is config and stays when the token is rejected")
	}
	if st := w.state(t); st.Jobs["t1"].State != runnersim.JobQueued {
		t.Errorf("t1 = %+v: a rejected runner must take no job", st.Jobs["t1"])
	}
	w.action(t, "i-token", runnersim.ActionStopIntake)
	res := w.action(t, "i-token", runnersim.ActionUnregister)
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "403") {
		t.Errorf("unregister with a rejected token: %+v; want failure with 403 text", res)
	}
}

func TestMetricsFaults(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{HugeBodyBytes: 2 << 20, SlowChunkInterval: 50 * time.Millisecond})
	get := func(id string, timeout time.Duration) (*http.Response, []byte, error) {
		c := netguard.HTTPClient(timeout)
		resp, err := c.Get(w.sim.URL() + "/instances/" + id + "/metrics")
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	// The slow and hanging bodies are read with a short timeout, which they must outlast; the
	// others with a long one, which only a loaded machine comes near (2 MiB took over 300 ms
	// once, in a full make test).
	short, long := 300*time.Millisecond, 30*time.Second
	for _, tc := range []struct {
		mode    string
		timeout time.Duration
		check   func(t *testing.T, resp *http.Response, body []byte, err error)
	}{
		{"500", long, func(t *testing.T, resp *http.Response, _ []byte, err error) {
			if err != nil || resp.StatusCode != 500 {
				t.Errorf("got %v %v, want status 500", resp, err)
			}
		}},
		{"garbage", long, func(t *testing.T, resp *http.Response, body []byte, err error) {
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("got %v %v, want 200", resp, err)
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			if _, perr := p.TextToMetricFamilies(bytes.NewReader(body)); perr == nil {
				t.Error("garbage parsed")
			}
		}},
		{"huge", long, func(t *testing.T, _ *http.Response, body []byte, err error) {
			if err != nil || len(body) < 2<<20 {
				t.Errorf("huge body: %d bytes, err %v; want at least 2 MiB", len(body), err)
			}
		}},
		{"slow", short, func(t *testing.T, _ *http.Response, _ []byte, err error) {
			if err == nil {
				t.Error("slow body read completely within 300ms")
			}
		}},
		{"hang", short, func(t *testing.T, _ *http.Response, _ []byte, err error) {
			var ne interface{ Timeout() bool }
			if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("hang: err %v, want a timeout", err)
			}
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			id := "i-fault-" + tc.mode
			w.register(t, id)
			if code := w.call(t, "POST", "/instances/"+id+"/fault", map[string]string{"mode": tc.mode}, nil); code != 200 {
				t.Fatalf("fault: %d", code)
			}
			resp, body, err := get(id, tc.timeout)
			tc.check(t, resp, body, err)
		})
	}
	if code := w.call(t, "POST", "/instances/i-fault-500/fault", map[string]string{"mode": "bogus"}, nil); code != 400 {
		t.Errorf("unknown fault mode: %d, want 400", code)
	}
	if code := w.call(t, "POST", "/instances/i-fault-500/fault", map[string]string{"mode": "none"}, nil); code != 200 {
		t.Fatalf("clearing: %d", code)
	}
	w.metrics(t, "i-fault-500")
}

func TestSharedQueueIsFIFOAcrossRunners(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{Concurrent: 1})
	w.register(t, "i-a")
	w.register(t, "i-b")
	w.jobs(t, runnersim.Job{ID: "f1", DurationMS: 60_000}, runnersim.Job{ID: "f2", DurationMS: 60_000}, runnersim.Job{ID: "f3", DurationMS: 60_000})
	st := w.waitFor(t, "two jobs running", func(st runnersim.State) bool { return st.Totals.Running == 2 })
	if st.Jobs["f1"].State != runnersim.JobRunning || st.Jobs["f2"].State != runnersim.JobRunning || st.Jobs["f3"].State != runnersim.JobQueued {
		t.Errorf("jobs = %+v; want f1, f2 running (one per runner) and f3 queued", st.Jobs)
	}
	if st.Jobs["f1"].InstanceID == st.Jobs["f2"].InstanceID {
		t.Errorf("f1 and f2 both on %s with concurrent 1", st.Jobs["f1"].InstanceID)
	}
}

func TestConfigRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, cfg := range []runnersim.Config{
		{Addr: "0.0.0.0:9252"},
		{Addr: "10.0.0.1:9252"},
		{EmulatorURL: "http://10.1.2.3:4566"},
		{EmulatorURL: "https://example.com"},
		{Concurrent: -1},
	} {
		if _, err := runnersim.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	sim, err := runnersim.New(runnersim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.SetEmulatorURL("http://192.168.1.1:4566"); err == nil {
		t.Error("SetEmulatorURL accepted a non-loopback URL")
	}
}

func TestStartRefusesTakenPort(t *testing.T) {
	t.Parallel()
	first := start(t, runnersim.Config{})
	addr := strings.TrimPrefix(first.sim.URL(), "http://")
	sim, err := runnersim.New(runnersim.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err == nil {
		_ = sim.Close()
		t.Fatal("a second simulator started on a taken port")
	}
}

func TestHangActionsBlocksUntilTheCallerGivesUp(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{})
	w.register(t, "i-hang")
	if code := w.call(t, "POST", "/instances/i-hang/fault", map[string]string{"mode": "hang-actions"}, nil); code != 200 {
		t.Fatalf("fault: %d", code)
	}
	c := netguard.HTTPClient(300 * time.Millisecond)
	resp, err := c.Post(w.sim.URL()+"/instances/i-hang/actions/status", "application/json", nil)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a hung action answered %d", resp.StatusCode)
	}
	var body struct {
		Instances []runnersim.InstanceState `json:"instances"`
	}
	if code := w.call(t, "GET", "/instances", nil, &body); code != 200 || len(body.Instances) != 1 || body.Instances[0].Fault != "hang-actions" {
		t.Errorf("GET /instances: %d %+v", code, body)
	}
	// Metrics stay normal under hang-actions.
	w.metrics(t, "i-hang")
}

func TestScheduledJobsArriveLater(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{})
	w.jobs(t, runnersim.Job{ID: "later", DurationMS: 1, ArriveAfterMS: 60_000}, runnersim.Job{ID: "soon", DurationMS: 1, ArriveAfterMS: 20})
	st := w.state(t)
	if st.Jobs["later"].State != runnersim.JobScheduled || len(st.Queued) != 0 {
		t.Fatalf("right after queueing: %+v; want both scheduled, none queued", st)
	}
	w.waitFor(t, "soon queued", jobIs("soon", runnersim.JobQueued))
	w.register(t, "i-late")
	st = w.waitFor(t, "soon finished", jobIs("soon", runnersim.JobFinished))
	if st.Jobs["later"].State != runnersim.JobScheduled || st.Totals.Scheduled != 1 {
		t.Errorf("later = %+v, totals %+v; want still scheduled", st.Jobs["later"], st.Totals)
	}
}

func TestQueuingBeyondThresholdIsCounted(t *testing.T) {
	t.Parallel()
	w := start(t, runnersim.Config{AcceptableQueuing: time.Millisecond})
	w.jobs(t, runnersim.Job{ID: "waited", DurationMS: 60_000})
	time.Sleep(20 * time.Millisecond) // the job waits at least this long before any runner exists
	w.register(t, "i-queuing")
	w.waitFor(t, "waited running", jobIs("waited", runnersim.JobRunning))
	if v, ok := value(w.metrics(t, "i-queuing"), "gitlab_runner_acceptable_job_queuing_duration_exceeded_total", map[string]string{"runner_name": "i-queuing"}); !ok || v != 1 {
		t.Errorf("queuing exceeded = %v (present %v), want 1", v, ok)
	}
}
