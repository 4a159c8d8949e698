package runnersim

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The metrics follow gitlab-runner's own names, help texts and labels, read from its source
// (gitlab.com/gitlab-org/gitlab-runner, mirrored as github.com/gitlabhq/gitlab-runner):
//   - commands/multi.go: gitlab_runner_concurrent (no labels) and gitlab_runner_limit
//     {runner, runner_name, system_id} (its help text really is "The current value of concurrent
//     setting" for both);
//   - commands/builds_helper.go: gitlab_runner_jobs {runner, runner_name, system_id, state, stage,
//     executor_stage} with an always-present "idle" series, gitlab_runner_jobs_total,
//     gitlab_runner_job_queue_size and gitlab_runner_job_queue_depth (set in addBuild, i.e. only
//     when the runner picks up a job, from the job's JobInfo — hence stale between pick-ups and
//     absent before the first one), gitlab_runner_acceptable_job_queuing_duration_exceeded_total
//     (Add(0) on every pick-up, Inc when the job waited longer than the configured threshold);
//   - network/api_requests_collector.go: gitlab_runner_api_request_statuses_total {runner,
//     system_id, endpoint, status, method}; endpoint "request_job" is POST /api/v4/jobs/request,
//     which GitLab answers 201 with a job, 204 without one and 403 when the token is rejected.
var (
	concurrentDesc = prometheus.NewDesc("gitlab_runner_concurrent",
		"The current value of concurrent setting", nil, nil)
	limitDesc = prometheus.NewDesc("gitlab_runner_limit",
		"The current value of concurrent setting", []string{"runner", "runner_name", "system_id"}, nil)
	jobsDesc = prometheus.NewDesc("gitlab_runner_jobs",
		"The current number of running builds.",
		[]string{"runner", "runner_name", "system_id", "state", "stage", "executor_stage"}, nil)
	jobsTotalDesc = prometheus.NewDesc("gitlab_runner_jobs_total",
		"Total number of handled jobs", []string{"runner", "runner_name", "system_id"}, nil)
	queueSizeDesc = prometheus.NewDesc("gitlab_runner_job_queue_size",
		"A gauge representing the size of the queue for the runner", []string{"runner", "runner_name", "system_id"}, nil)
	queueDepthDesc = prometheus.NewDesc("gitlab_runner_job_queue_depth",
		"A gauge representing the search depth in the queue for the runner", []string{"runner", "runner_name", "system_id"}, nil)
	queuingExceededDesc = prometheus.NewDesc("gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
		"Counts how often jobs exceed the configured queuing time threshold", []string{"runner", "runner_name", "system_id"}, nil)
	apiStatusesDesc = prometheus.NewDesc("gitlab_runner_api_request_statuses_total",
		"The total number of API requests made by GitLab Runner, partitioned by runner, system_id, endpoint, status and method.",
		[]string{"runner", "system_id", "endpoint", "status", "method"}, nil)
)

// Labels of a running job in gitlab_runner_jobs: a job in its script step of the docker executor.
const (
	runningState         = "running"
	runningStage         = "step_script"
	runningExecutorStage = "docker_run"
)

// snapshot is one instance's metric values, copied under the simulator's lock.
type snapshot struct {
	concurrent                   int
	runner, runnerName, systemID string
	running                      int
	started                      int
	statuses                     map[int]float64
	pickedUp                     bool
	queueSize, queueDepth        float64
	queuingExceeded              float64
}

func (in *instance) snapshot() snapshot {
	st := make(map[int]float64, len(in.requestStatuses))
	for k, v := range in.requestStatuses {
		st[k] = v
	}
	return snapshot{
		concurrent: in.concurrent, runner: in.runner, runnerName: in.runnerName, systemID: in.systemID,
		running: len(in.running), started: in.started, statuses: st, pickedUp: in.pickedUp,
		queueSize: in.queueSize, queueDepth: in.queueDepth, queuingExceeded: in.queuingExceeded,
	}
}

// Describe implements prometheus.Collector.
func (s snapshot) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{concurrentDesc, limitDesc, jobsDesc, jobsTotalDesc,
		queueSizeDesc, queueDepthDesc, queuingExceededDesc, apiStatusesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s snapshot) Collect(ch chan<- prometheus.Metric) {
	id := []string{s.runner, s.runnerName, s.systemID}
	ch <- prometheus.MustNewConstMetric(concurrentDesc, prometheus.GaugeValue, float64(s.concurrent))
	ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(s.concurrent), id...)
	ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, 0, append(id, "idle", "idle", "idle")...)
	if s.running > 0 {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(s.running),
			append(id, runningState, runningStage, runningExecutorStage)...)
	}
	if s.started > 0 {
		ch <- prometheus.MustNewConstMetric(jobsTotalDesc, prometheus.CounterValue, float64(s.started), id...)
	}
	if s.pickedUp {
		ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, s.queueSize, id...)
		ch <- prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, s.queueDepth, id...)
		ch <- prometheus.MustNewConstMetric(queuingExceededDesc, prometheus.CounterValue, s.queuingExceeded, id...)
	}
	codes := make([]int, 0, len(s.statuses))
	for c := range s.statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		ch <- prometheus.MustNewConstMetric(apiStatusesDesc, prometheus.CounterValue, s.statuses[c],
			s.runner, s.systemID, "request_job", strconv.Itoa(c), "post")
	}
}

// textFormat is the exposition format gitlab-runner serves by default (text 0.0.4).
var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// render encodes a snapshot in the Prometheus text format.
func (s snapshot) render() ([]byte, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, textFormat)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", mf.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}
