package scrape

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gitlab-runner's metric names and labels (commands/builds_helper.go, commands/multi.go and
// network/api_requests_collector.go of gitlab-runner).
const (
	// metricConcurrent is the global `concurrent` setting; no labels.
	metricConcurrent = "gitlab_runner_concurrent"
	// metricLimit is each [[runners]] entry's `limit` (0 = unlimited); labels runner, system_id.
	metricLimit = "gitlab_runner_limit"
	// metricJobs counts jobs by runner, runner_name, system_id, state, stage, executor_stage;
	// every runner always has a zero series with state "idle".
	metricJobs = "gitlab_runner_jobs"
	// metricJobsTotal counts jobs a runner has picked up; labels runner, runner_name, system_id.
	metricJobsTotal = "gitlab_runner_jobs_total"
	// metricQueueSize and metricQueueDepth are set from the job payload when a runner picks up a
	// job, and only then: between pickups they hold the value of the last one.
	metricQueueSize  = "gitlab_runner_job_queue_size"
	metricQueueDepth = "gitlab_runner_job_queue_depth"
	// metricQueuingExceeded counts picked-up jobs that waited longer than the runner's configured
	// acceptable queuing duration.
	metricQueuingExceeded = "gitlab_runner_acceptable_job_queuing_duration_exceeded_total"
	// metricAPIStatuses counts GitLab API calls by runner, system_id, endpoint, status, method.
	metricAPIStatuses = "gitlab_runner_api_request_statuses_total"

	labelRunner   = "runner"
	labelState    = "state"
	labelEndpoint = "endpoint"
	labelStatus   = "status"

	stateRunning = "running"
	stateIdle    = "idle"

	endpointRequestJob = "request_job"
)

// runnerSample is what one runner section ([[runners]] entry) of a gitlab-runner process reports.
type runnerSample struct {
	limit    float64 // gitlab_runner_limit; 0 = unlimited
	hasLimit bool
	// requestJob counts request_job calls by outcome, since the process started.
	requestOK       float64
	requestRejected float64
}

// sample is one parsed scrape of one gitlab-runner process.
type sample struct {
	concurrent    float64
	hasConcurrent bool
	running       float64 // jobs with state "running"
	otherBusy     float64 // jobs in any other non-idle state (pending, finishing, …)
	jobsTotal     float64
	queueSize     float64
	queueDepth    float64
	hasQueue      bool
	exceeded      float64
	hasExceeded   bool
	runners       map[string]*runnerSample
	// sections is true when some series belongs to a runner section ([[runners]] of the
	// process's config): a limit, a job, an API call. Without one the process takes no job.
	sections bool
}

// wanted are the families parse reads; every other line of the page is skipped before parsing.
var wanted = map[string]bool{
	metricConcurrent: true, metricLimit: true, metricJobs: true, metricJobsTotal: true,
	metricQueueSize: true, metricQueueDepth: true, metricQueuingExceeded: true, metricAPIStatuses: true,
}

var (
	runnerPrefix    = []byte("gitlab_runner_")
	requestJobLabel = []byte(`endpoint="request_job"`)
	idleStateLabel  = []byte(`state="idle"`)
)

// errGarbled reports a line that is neither a comment nor a sample of a legacy-named metric.
var errGarbled = errors.New("line is not in the text exposition format")

// filter copies into dst the sample lines of body that belong to the wanted families. A real gitlab-runner page is mostly Go runtime, process and latency
// histogram series; parsing only the eight families the scraper reads is what keeps a tick over
// 1,000 runners close to the cost of fetching them. A line whose metric name holds a character
// outside [a-zA-Z0-9_:] (an HTML error page, binary noise) makes the whole body garbled; lines
// starting with '{' (quoted UTF-8 names, which gitlab-runner does not use) are skipped.
func filter(dst *bytes.Buffer, body []byte) error {
	// Errors name the line by number only: a line may carry a runner's short token.
	lineNo := 0
	for len(body) > 0 {
		lineNo++
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i+1], body[i+1:]
		} else {
			body = nil
		}
		for len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			line = line[1:]
		}
		if len(line) == 0 {
			continue
		}
		switch c := line[0]; {
		case c == '#' || c == '\n' || c == '\r' || c == '{':
			// Comments are skipped: HELP is for people, and without TYPE the wanted families
			// parse as untyped samples with the same values (none is a histogram or summary).
			continue
		case !bytes.HasPrefix(line, runnerPrefix):
			// Most of a page (go_*, process_*): only its first byte is checked, which is enough
			// to tell an HTML page or binary noise from an exposition.
			if !legacyName(line[:1]) {
				return fmt.Errorf("%w: line %d", errGarbled, lineNo)
			}
			continue
		}
		i := bytes.IndexAny(line, "{ \t")
		if i < 0 || !legacyName(line[:i]) {
			return fmt.Errorf("%w: line %d", errGarbled, lineNo)
		}
		name := line[:i]
		if !wanted[string(name)] {
			continue
		}
		switch string(name) {
		case metricAPIStatuses:
			if !bytes.Contains(line, requestJobLabel) {
				continue // only request_job statuses are read
			}
		case metricJobs:
			if bytes.Contains(line, idleStateLabel) {
				continue // the always-present idle series counts nothing
			}
		}
		if !compact(dst, line, len(name), keptLabels[string(name)]) {
			dst.Write(line)
		}
		if line[len(line)-1] != '\n' {
			dst.WriteByte('\n')
		}
	}
	return nil
}

// keptLabels are the labels parse reads, per family; the others (system_id, runner_name, stage,
// executor_stage, method, …) are dropped before parsing, which halves the parser's allocations.
// Series that become identical are summed by parse, as they would have been anyway.
var keptLabels = map[string][]string{
	metricLimit:       {labelRunner},
	metricJobs:        {labelState},
	metricAPIStatuses: {labelEndpoint, labelRunner, labelStatus},
}

// compact writes line (a sample whose metric name is line[:nameEnd]) with only the keep labels.
// It returns false, having written nothing, when the label set is not plainly name="value" pairs;
// the caller then passes the line on unchanged for the parser to judge.
func compact(dst *bytes.Buffer, line []byte, nameEnd int, keep []string) bool {
	rest := line[nameEnd:]
	if len(rest) == 0 || rest[0] != '{' {
		return false // no labels: nothing to drop
	}
	end := -1
	var kept [][2][]byte
	i := 1
	for {
		for i < len(rest) && (rest[i] == ' ' || rest[i] == ',') {
			i++
		}
		if i < len(rest) && rest[i] == '}' {
			end = i + 1
			break
		}
		eq := bytes.IndexByte(rest[i:], '=')
		if eq <= 0 || i+eq+1 >= len(rest) || rest[i+eq+1] != '"' {
			return false
		}
		lname := bytes.TrimSpace(rest[i : i+eq])
		j := i + eq + 2 // first byte of the value
		k := j
		for k < len(rest) && rest[k] != '"' {
			if rest[k] == '\\' {
				k++
			}
			k++
		}
		if k >= len(rest) {
			return false
		}
		for _, want := range keep {
			if string(lname) == want {
				kept = append(kept, [2][]byte{lname, rest[i+eq : k+1]})
			}
		}
		i = k + 1
	}
	dst.Write(line[:nameEnd])
	if len(kept) > 0 {
		dst.WriteByte('{')
		for n, kv := range kept {
			if n > 0 {
				dst.WriteByte(',')
			}
			dst.Write(kv[0])
			dst.Write(kv[1])
		}
		dst.WriteByte('}')
	}
	dst.Write(rest[end:])
	return true
}

func legacyName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// newParser returns a text parser. A zero TextParser has no validation scheme and panics; always
// build it with NewTextParser. A parser is reused across calls (it keeps its read buffer) but must
// not be used by two goroutines at once.
func newParser() *expfmt.TextParser {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return &p
}

// parse reads gitlab-runner's text exposition into a sample with p. A body the text parser
// refuses is an error; absent families are not (a runner that never ran a job has no queue
// gauges).
func parse(p *expfmt.TextParser, r io.Reader) (*sample, error) {
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		// expfmt's message may quote label values (a runner's short token): keep the line only.
		var pe expfmt.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("parsing metrics exposition: %w at filtered line %d", errGarbled, pe.Line)
		}
		return nil, fmt.Errorf("parsing metrics exposition: %w", errGarbled)
	}
	s := &sample{runners: map[string]*runnerSample{}}
	runner := func(m *dto.Metric) *runnerSample {
		name := label(m, labelRunner)
		rs := s.runners[name]
		if rs == nil {
			rs = &runnerSample{}
			s.runners[name] = rs
		}
		return rs
	}
	if mf := families[metricConcurrent]; mf != nil {
		for _, m := range mf.GetMetric() {
			if v, ok := value(m); ok {
				s.concurrent = max(s.concurrent, v)
				s.hasConcurrent = true
			}
		}
	}
	if mf := families[metricLimit]; mf != nil {
		for _, m := range mf.GetMetric() {
			if v, ok := value(m); ok {
				rs := runner(m)
				rs.limit, rs.hasLimit = v, true
				s.sections = true
			}
		}
	}
	if mf := families[metricJobs]; mf != nil {
		s.sections = s.sections || len(mf.GetMetric()) > 0 // a series per runner section
		for _, m := range mf.GetMetric() {
			v, ok := value(m)
			if !ok || v <= 0 {
				continue
			}
			switch label(m, labelState) {
			case stateRunning:
				s.running += v
			case stateIdle:
			default:
				s.otherBusy += v
			}
		}
	}
	s.jobsTotal, _ = sum(families[metricJobsTotal])
	size, hasSize := sum(families[metricQueueSize])
	depth, hasDepth := sum(families[metricQueueDepth])
	s.queueSize, s.queueDepth, s.hasQueue = size, depth, hasSize || hasDepth
	s.exceeded, s.hasExceeded = sum(families[metricQueuingExceeded])
	if mf := families[metricAPIStatuses]; mf != nil {
		for _, m := range mf.GetMetric() {
			s.sections = s.sections || label(m, labelRunner) != ""
			if label(m, labelEndpoint) != endpointRequestJob {
				continue
			}
			v, ok := value(m)
			if !ok {
				continue
			}
			rs := runner(m)
			switch classifyStatus(label(m, labelStatus)) {
			case statusOK:
				rs.requestOK += v
			case statusRejected:
				rs.requestRejected += v
			}
		}
	}
	return s, nil
}

type statusClass int

const (
	statusOther statusClass = iota
	statusOK
	statusRejected
)

// classifyStatus sorts a request_job HTTP status: 201 (job given) and 204 (no job) mean GitLab
// accepts the runner; 401, 403 and 410 mean it refuses the runner's token (revoked, deleted or
// expired) so the runner will never get a job. Others (409 conflicts, 429, 5xx) say nothing
// about this runner.
func classifyStatus(s string) statusClass {
	code, err := strconv.Atoi(s)
	if err != nil {
		return statusOther
	}
	switch {
	case code >= 200 && code < 300:
		return statusOK
	case code == 401 || code == 403 || code == 410:
		return statusRejected
	}
	return statusOther
}

// value is the value of a gauge, counter or untyped metric; NaN and infinities are refused.
func value(m *dto.Metric) (float64, bool) {
	var v float64
	switch {
	case m.Gauge != nil:
		v = m.GetGauge().GetValue()
	case m.Counter != nil:
		v = m.GetCounter().GetValue()
	case m.Untyped != nil:
		v = m.GetUntyped().GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// sum adds every series of a family; ok is false when the family is absent.
func sum(mf *dto.MetricFamily) (total float64, ok bool) {
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if v, vok := value(m); vok {
			total += v
			ok = true
		}
	}
	return total, ok
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}
