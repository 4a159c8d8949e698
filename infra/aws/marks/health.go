package marks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/template"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/launch"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// maxMetricsBytes caps one metrics page (as infra/scrape does): a runner's page is tens of KiB.
const maxMetricsBytes = 1 << 20

// runnerTimeout bounds one metrics request (infra/scrape's default): gitlab-runner answers from
// memory in milliseconds; one that needs seconds counts as not answering.
const runnerTimeout = 3 * time.Second

// Addresses finds an instance's private IP for metrics URL templates that use it (EC2
// DescribeInstances behind IPs); nil when every template uses the instance ID only. An error
// wrapping ErrNoAddress says the instance has none (it is gone); any other error is a failed
// lookup (throttled, access denied, the caller's deadline), which says nothing about the runner.
type Addresses interface {
	PrivateIP(ctx context.Context, instanceID string) (string, error)
}

// Runners reads one runner's metrics page from its fleet's metrics URL template. It counts
// request_job statuses for the launch gate (handlers/launch.Health) and running jobs
// (handlers/launch.Jobs, handlers/interrupt.Jobs). It is safe for concurrent use.
//
// Its errors say whose failure a look was. A *launch.WorkerError (wrapped) is the worker's: the
// address lookup failed (EC2 throttled it, refused the worker's role, or did not answer), the
// caller's context ended before the runner was given its runnerTimeout, the URL template failed,
// the worker's own DNS resolver or egress guard (infra/netguard) refused, or its own sockets
// failed (out of file descriptors or local ports, no route from its subnet). Any other error is
// the runner's: the instance is gone, the connection was refused or reset, no answer within
// runnerTimeout, an HTTP status other than 200, a page too large or garbled.
type Runners struct {
	client    *http.Client
	templates map[string]*template.Template
	ips       Addresses
}

// NewRunners returns Runners for the fleets (default template fleet.DefaultMetricsURL). client
// bounds each request (tests and the local world pass infra/netguard's). ips may be nil when no
// template uses PrivateIP.
func NewRunners(client *http.Client, fleets []fleet.Settings, ips Addresses) (*Runners, error) {
	if client == nil {
		return nil, errors.New("marks: nil http client")
	}
	r := &Runners{client: client, templates: map[string]*template.Template{}, ips: ips}
	var errs []error
	for _, f := range fleets {
		text := f.MetricsURL
		if text == "" {
			text = fleet.DefaultMetricsURL
		}
		t, err := template.New("metrics_url").Option("missingkey=error").Parse(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("marks: fleet %q: metrics url: %w", f.Name, err))
			continue
		}
		if strings.Contains(text, "PrivateIP") && ips == nil {
			errs = append(errs, fmt.Errorf("marks: fleet %q: metrics url uses PrivateIP but no address lookup was given", f.Name))
		}
		r.templates[f.Name] = t
	}
	return r, errors.Join(errs...)
}

// RequestJobs returns the runner's request_job counters: ok sums the 2xx statuses (GitLab gave a
// job or had none), rejected sums 401, 403 and 410 (the runner's token is refused). An error
// means the metrics did not answer usefully (no answer, HTTP error, garbled page), or, as a
// *launch.WorkerError, that the worker could not ask them (see Runners).
func (r *Runners) RequestJobs(ctx context.Context, fleetName, instanceID string) (ok, rejected float64, err error) {
	fams, err := r.fetch(ctx, fleetName, instanceID)
	if err != nil {
		return 0, 0, err
	}
	mf := fams["gitlab_runner_api_request_statuses_total"]
	for _, m := range mf.GetMetric() {
		var endpoint, status string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "endpoint":
				endpoint = l.GetValue()
			case "status":
				status = l.GetValue()
			}
		}
		if endpoint != "request_job" {
			continue
		}
		v := m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		code, _ := strconv.Atoi(status)
		switch {
		case code >= 200 && code < 300:
			ok += v
		case code == 401 || code == 403 || code == 410:
			rejected += v
		}
	}
	return ok, rejected, nil
}

// RunningJobs counts the runner's jobs in any state but idle (gitlab_runner_jobs).
func (r *Runners) RunningJobs(ctx context.Context, fleetName, instanceID string) (int, error) {
	fams, err := r.fetch(ctx, fleetName, instanceID)
	if err != nil {
		return 0, err
	}
	if _, ok := fams["gitlab_runner_concurrent"]; !ok {
		return 0, fmt.Errorf("runner metrics of %s: no gitlab_runner_concurrent", instanceID)
	}
	n := 0.0
	for _, m := range fams["gitlab_runner_jobs"].GetMetric() {
		idle := false
		for _, l := range m.GetLabel() {
			if l.GetName() == "state" && l.GetValue() == "idle" {
				idle = true
			}
		}
		if !idle {
			n += m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return int(n), nil
}

func (r *Runners) fetch(ctx context.Context, fleetName, instanceID string) (map[string]*dto.MetricFamily, error) {
	t, ok := r.templates[fleetName]
	if !ok {
		return nil, workerSide(launch.WorkerURLTemplate, fmt.Errorf("runner metrics of %s: unknown fleet %q", instanceID, fleetName))
	}
	target := struct{ InstanceID, PrivateIP string }{InstanceID: instanceID}
	if r.ips != nil && strings.Contains(t.Root.String(), "PrivateIP") {
		ip, err := r.ips.PrivateIP(ctx, instanceID)
		if err != nil {
			return nil, addressFailure(ctx, fmt.Errorf("runner metrics of %s: %w", instanceID, err))
		}
		target.PrivateIP = ip
	}
	var url strings.Builder
	if err := t.Execute(&url, target); err != nil {
		return nil, workerSide(launch.WorkerURLTemplate, fmt.Errorf("runner metrics of %s: url: %w", instanceID, err))
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, runnerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url.String(), nil)
	if err != nil {
		return nil, workerSide(launch.WorkerURLTemplate, fmt.Errorf("runner metrics of %s: url: %w", instanceID, err))
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, requestFailure(parent, fmt.Errorf("runner metrics of %s: no answer: %w", instanceID, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("runner metrics of %s: HTTP %d", instanceID, resp.StatusCode)
	}
	// Read one byte past the cap: a page cut at a line boundary would parse, and a running-jobs
	// series cut off would read as 0 jobs.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetricsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("runner metrics of %s: reading the page: %w", instanceID, err)
	}
	if len(body) > maxMetricsBytes {
		return nil, fmt.Errorf("runner metrics of %s: page larger than %d bytes", instanceID, maxMetricsBytes)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("runner metrics of %s: unparseable page", instanceID)
	}
	return fams, nil
}

// workerSide marks err as a look the worker could not make (see Runners).
func workerSide(reason string, err error) error { return &launch.WorkerError{Reason: reason, Err: err} }

// addressFailure says whose failure a failed address lookup is: an instance without an address
// (gone) is the instance's; a failed DescribeInstances is the worker's, by its class.
func addressFailure(ctx context.Context, err error) error {
	if errors.Is(err, ErrNoAddress) || rfaws.IsNotFound(err) {
		return err
	}
	return rfaws.WorkerFailure(ctx, err)
}

// requestFailure says whose failure a metrics request that got no response is. The worker's: its
// context (parent) ended, so the runner was not given its runnerTimeout; or its own network side
// failed (netguard.LocalFailure: its egress guard, its DNS resolver — a name that does not exist
// is the instance's — its own sockets). Anything else — refused, reset, host unreachable, no
// answer within runnerTimeout — is the runner's.
func requestFailure(parent context.Context, err error) error {
	switch {
	case parent.Err() != nil:
		return workerSide(launch.WorkerDeadline, err)
	case netguard.LocalFailure(err):
		return workerSide(launch.WorkerNetwork, err)
	}
	return err
}
