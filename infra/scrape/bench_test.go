package scrape

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/scaling"
)

// benchRunners is the fleet size of the benchmarks (the goal is stated for 1,000).
const benchRunners = 1000

// runnerPage renders a gitlab-runner /metrics page as a real one looks: the runner families the
// scraper reads, plus the Go, process and API-latency families a real runner also serves (about
// 14 KiB, like gitlab-runner 17.x).
func runnerPage(i int) []byte {
	var b bytes.Buffer
	tok := fmt.Sprintf("t%07d", i)
	sys := fmt.Sprintf("s_%012x", i)
	running := i % 3
	fmt.Fprintf(&b, "# HELP gitlab_runner_api_request_duration_seconds Latency histogram of API requests made by GitLab Runner, partitioned by runner, system_id, endpoint, status_class and method.\n# TYPE gitlab_runner_api_request_duration_seconds histogram\n")
	for _, ep := range []string{"request_job", "update_job", "patch_trace"} {
		cum := 0
		for j, le := range []string{"0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "+Inf"} {
			cum += 40 / (j + 1)
			fmt.Fprintf(&b, "gitlab_runner_api_request_duration_seconds_bucket{endpoint=%q,method=\"post\",runner=%q,status_class=\"2xx\",system_id=%q,le=%q} %d\n", ep, tok, sys, le, cum)
		}
		fmt.Fprintf(&b, "gitlab_runner_api_request_duration_seconds_sum{endpoint=%q,method=\"post\",runner=%q,status_class=\"2xx\",system_id=%q} 31.7\n", ep, tok, sys)
		fmt.Fprintf(&b, "gitlab_runner_api_request_duration_seconds_count{endpoint=%q,method=\"post\",runner=%q,status_class=\"2xx\",system_id=%q} %d\n", ep, tok, sys, cum)
	}
	fmt.Fprintf(&b, "# HELP gitlab_runner_api_request_statuses_total The total number of API requests made by GitLab Runner.\n# TYPE gitlab_runner_api_request_statuses_total counter\n")
	fmt.Fprintf(&b, "gitlab_runner_api_request_statuses_total{endpoint=\"request_job\",method=\"post\",runner=%q,status=\"201\",system_id=%q} %d\n", tok, sys, 40+i)
	fmt.Fprintf(&b, "gitlab_runner_api_request_statuses_total{endpoint=\"request_job\",method=\"post\",runner=%q,status=\"204\",system_id=%q} %d\n", tok, sys, 1800+i)
	fmt.Fprintf(&b, "gitlab_runner_api_request_statuses_total{endpoint=\"update_job\",method=\"put\",runner=%q,status=\"200\",system_id=%q} 160\n", tok, sys)
	fmt.Fprintf(&b, "# HELP gitlab_runner_concurrent The current value of concurrent setting\n# TYPE gitlab_runner_concurrent gauge\ngitlab_runner_concurrent 4\n")
	fmt.Fprintf(&b, "# HELP gitlab_runner_errors_total The number of caught errors.\n# TYPE gitlab_runner_errors_total counter\ngitlab_runner_errors_total{level=\"error\"} 0\ngitlab_runner_errors_total{level=\"warning\"} 3\n")
	fmt.Fprintf(&b, "# HELP gitlab_runner_jobs The current number of running builds.\n# TYPE gitlab_runner_jobs gauge\n")
	fmt.Fprintf(&b, "gitlab_runner_jobs{executor_stage=\"idle\",runner=%q,runner_name=\"ci\",stage=\"idle\",state=\"idle\",system_id=%q} 0\n", tok, sys)
	if running > 0 {
		fmt.Fprintf(&b, "gitlab_runner_jobs{executor_stage=\"docker_run\",runner=%q,runner_name=\"ci\",stage=\"step_script\",state=\"running\",system_id=%q} %d\n", tok, sys, running)
	}
	fmt.Fprintf(&b, "# TYPE gitlab_runner_jobs_total counter\ngitlab_runner_jobs_total{runner=%q,runner_name=\"ci\",system_id=%q} %d\n", tok, sys, 40+i)
	fmt.Fprintf(&b, "# TYPE gitlab_runner_job_queue_size gauge\ngitlab_runner_job_queue_size{runner=%q,runner_name=\"ci\",system_id=%q} %d\n", tok, sys, i%5)
	fmt.Fprintf(&b, "# TYPE gitlab_runner_job_queue_depth gauge\ngitlab_runner_job_queue_depth{runner=%q,runner_name=\"ci\",system_id=%q} 1\n", tok, sys)
	fmt.Fprintf(&b, "# TYPE gitlab_runner_acceptable_job_queuing_duration_exceeded_total counter\ngitlab_runner_acceptable_job_queuing_duration_exceeded_total{runner=%q,runner_name=\"ci\",system_id=%q} 2\n", tok, sys)
	fmt.Fprintf(&b, "# TYPE gitlab_runner_limit gauge\ngitlab_runner_limit{runner=%q,system_id=%q} 0\n", tok, sys)
	fmt.Fprintf(&b, "# TYPE gitlab_runner_version_info gauge\ngitlab_runner_version_info{architecture=\"amd64\",branch=\"17-10-stable\",built_at=\"2025-03-19T12:11:03Z\",go_version=\"go1.23.6\",name=\"gitlab-runner\",os=\"linux\",revision=\"a1b2c3d4\",version=\"17.10.0\"} 1\n")
	fmt.Fprintf(&b, "# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.\n# TYPE go_gc_duration_seconds summary\n")
	for _, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		fmt.Fprintf(&b, "go_gc_duration_seconds{quantile=%q} 6.1e-05\n", q)
	}
	fmt.Fprintf(&b, "go_gc_duration_seconds_sum 0.0291\ngo_gc_duration_seconds_count 377\n")
	for _, g := range []string{"go_goroutines", "go_threads", "go_memstats_alloc_bytes", "go_memstats_alloc_bytes_total", "go_memstats_buck_hash_sys_bytes",
		"go_memstats_frees_total", "go_memstats_gc_sys_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_heap_objects", "go_memstats_heap_released_bytes", "go_memstats_heap_sys_bytes", "go_memstats_last_gc_time_seconds", "go_memstats_lookups_total",
		"go_memstats_mallocs_total", "go_memstats_mcache_inuse_bytes", "go_memstats_mcache_sys_bytes", "go_memstats_mspan_inuse_bytes", "go_memstats_mspan_sys_bytes",
		"go_memstats_next_gc_bytes", "go_memstats_other_sys_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_stack_sys_bytes", "go_memstats_sys_bytes",
		"process_cpu_seconds_total", "process_max_fds", "process_open_fds", "process_resident_memory_bytes", "process_start_time_seconds",
		"process_virtual_memory_bytes", "process_virtual_memory_max_bytes"} {
		fmt.Fprintf(&b, "# HELP %s Go runtime or process statistic.\n# TYPE %s gauge\n%s %d\n", g, g, g, 1_000_000+i)
	}
	return b.Bytes()
}

// benchWorld serves benchRunners pages at /instances/i-N/metrics; IDs in hung never answer
// until the request is cancelled.
type benchWorld struct {
	srv     *httptest.Server
	targets []scale.Target
	urls    []string
	tmpl    string
}

func newBenchWorld(tb testing.TB, hung map[int]bool) *benchWorld {
	tb.Helper()
	pages := make([][]byte, benchRunners)
	for i := range pages {
		pages[i] = runnerPage(i)
	}
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/instances/i-")
		n, err := strconv.Atoi(strings.TrimSuffix(rest, "/metrics"))
		if err != nil || n < 0 || n >= benchRunners {
			http.NotFound(w, r)
			return
		}
		if hung[n] {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(pages[n])
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.MaxHeaderBytes = 1 << 16
	srv.Start()
	tb.Cleanup(srv.Close)
	w := &benchWorld{srv: srv, tmpl: srv.URL + "/instances/{{.InstanceID}}/metrics"}
	for i := range benchRunners {
		id := fmt.Sprintf("i-%d", i)
		w.targets = append(w.targets, scale.Target{InstanceID: id, PrivateIP: "10.0.0.1"})
		w.urls = append(w.urls, srv.URL+"/instances/"+id+"/metrics")
	}
	return w
}

// fanout is the floor: GET every URL with the same concurrency and client, reading each body.
func fanout(client *http.Client, urls []string, concurrency int) {
	next := make(chan string)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for u := range next {
				resp, err := client.Get(u)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	for _, u := range urls {
		next <- u
	}
	close(next)
	wg.Wait()
}

// tick is what the scale handler does per tick, minus the AWS calls: scrape every runner, build
// the fleet view and decide.
func tick(s *Scraper, w *benchWorld, launched time.Time) scaling.Decision {
	scraped, err := s.ScrapeRunners(context.Background(), w.tmpl, w.targets)
	if err != nil {
		panic(err) // the template is a constant of this file
	}
	for i := range scraped {
		scraped[i].State = fleet.StateInService
		scraped[i].LaunchedAt = launched
	}
	return scaling.Decide(time.Now(), fleet.Policy{MaxInstances: 2 * benchRunners}, scaling.Input{Instances: scraped, Desired: benchRunners})
}

// BenchmarkTickVsFanout measures scrape + parse + decide over 1,000 runners on loopback against a
// bare HTTP fan-out over the same targets, same client and concurrency, interleaved in one run.
// Reported: tick_ms, fanout_ms and tick/fanout (goal ≤ 2, and tick under 500 ms on 2 cores).
func BenchmarkTickVsFanout(b *testing.B) {
	w := newBenchWorld(b, nil)
	client := netguard.HTTPClient(0)
	s, err := New(Config{}, client)
	if err != nil {
		b.Fatal(err)
	}
	launched := time.Now().Add(-time.Hour)
	// Warm both paths (connections, pools) before timing.
	fanout(client, w.urls, DefaultConcurrency)
	if d := tick(s, w, launched); d.Observation.Unknown != 0 {
		b.Fatalf("%d unknown runners in a healthy world", d.Observation.Unknown)
	}
	var tickTotal, fanTotal time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		fanout(client, w.urls, DefaultConcurrency)
		fanTotal += time.Since(start)
		start = time.Now()
		tick(s, w, launched)
		tickTotal += time.Since(start)
	}
	b.StopTimer()
	tickMS := float64(tickTotal.Microseconds()) / 1000 / float64(b.N)
	fanMS := float64(fanTotal.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(tickMS, "tick_ms")
	b.ReportMetric(fanMS, "fanout_ms")
	b.ReportMetric(tickMS/fanMS, "tick/fanout")
}

// BenchmarkHungTargets measures a tick over 1,000 runners of which 50 never answer, with
// concurrency 64, against the per-target timeout. Reported: tick_ms, timeout_ms and
// tick/timeout (goal ≤ 1.1). "first" is the first tick a worker makes; "steady" the following
// ones, which start last tick's timed-out targets first.
func BenchmarkHungTargets(b *testing.B) {
	const timeout = 2 * time.Second
	hung := map[int]bool{}
	for i := range 50 {
		hung[i*benchRunners/50+benchRunners/50-1] = true // spread: the 20th, 40th, … 1000th
	}
	w := newBenchWorld(b, hung)
	launched := time.Now().Add(-time.Hour)
	for _, mode := range []string{"first", "steady"} {
		b.Run(mode, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				s, err := New(Config{Timeout: timeout, Concurrency: 64}, netguard.HTTPClient(0))
				if err != nil {
					b.Fatal(err)
				}
				if mode == "steady" {
					tick(s, w, launched)
				}
				b.StartTimer()
				start := time.Now()
				d := tick(s, w, launched)
				total += time.Since(start)
				if d.Observation.Unknown != len(hung) {
					b.Fatalf("%d unknown, want %d", d.Observation.Unknown, len(hung))
				}
			}
			ms := float64(total.Microseconds()) / 1000 / float64(b.N)
			b.ReportMetric(ms, "tick_ms")
			b.ReportMetric(float64(timeout.Milliseconds()), "timeout_ms")
			b.ReportMetric(ms/float64(timeout.Milliseconds()), "tick/timeout")
		})
	}
}

// rssChildEnv makes the test binary a child process that runs ticks (or idles) and prints its
// VmHWM; see BenchmarkPeakRSS.
const rssChildEnv = "RUNNERFLEET_SCRAPE_RSS_CHILD"

// TestMain runs the RSS child when asked to, else the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv(rssChildEnv); mode != "" {
		os.Exit(rssChild(mode, os.Getenv(rssChildEnv+"_URL")))
	}
	os.Exit(m.Run())
}

// rssChild builds what a worker builds for scaling (client, scraper) and, in mode "ticks", runs
// ten ticks over the parent's 1,000 runners; then prints "VmHWM <kB>".
func rssChild(mode, base string) int {
	s, err := New(Config{}, netguard.HTTPClient(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if mode == "ticks" {
		w := &benchWorld{tmpl: base + "/instances/{{.InstanceID}}/metrics"}
		for i := range benchRunners {
			w.targets = append(w.targets, scale.Target{InstanceID: fmt.Sprintf("i-%d", i)})
		}
		for range 10 {
			if d := tick(s, w, time.Now().Add(-time.Hour)); d.Observation.Unknown != 0 {
				fmt.Fprintf(os.Stderr, "%d unknown\n", d.Observation.Unknown)
				return 2
			}
		}
	}
	kb, err := vmHWM()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("VmHWM %d\n", kb)
	return 0
}

func vmHWM() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// BenchmarkPeakRSS reports the peak RSS (VmHWM) of a process that runs ten ticks over 1,000
// runners beside one that only builds the same scraper and idles, each a fresh child process
// (VmHWM never goes down, so one process cannot measure both). The runners are served by this
// process. Reported: ticks_MB, idle_MB, ticks-idle_MB (goal: ticks under 64 MB).
func BenchmarkPeakRSS(b *testing.B) {
	w := newBenchWorld(b, nil)
	run := func(mode string) float64 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+mode, rssChildEnv+"_URL="+w.srv.URL)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("rss child %s: %v\n%s", mode, err, out)
		}
		var kb int
		if _, err := fmt.Sscanf(string(out), "VmHWM %d", &kb); err != nil {
			b.Fatalf("rss child %s printed %q", mode, out)
		}
		return float64(kb) / 1024
	}
	var ticks, idle float64
	for range b.N {
		idle += run("idle")
		ticks += run("ticks")
	}
	b.ReportMetric(ticks/float64(b.N), "ticks_MB")
	b.ReportMetric(idle/float64(b.N), "idle_MB")
	b.ReportMetric((ticks-idle)/float64(b.N), "ticks-idle_MB")
}
