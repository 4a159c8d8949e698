// Package scrape reads gitlab-runner's Prometheus metrics from every instance of a fleet, all at
// once and within a bounded time, and turns them into what the scaling policy needs: job slots
// offered, jobs running, the runner's view of the job queue, and whether GitLab accepts its job
// requests.
//
// A scrape that fails, is slow, too large or unparseable makes that instance unknown, with the
// reason; it never reads as zero jobs. (The AWS sample counted a failed scrape as an idle runner,
// so a network blip shrank the fleet.)
//
// Cost. A real gitlab-runner page is ~14 KiB, mostly Go runtime, process and API-latency series.
// Before expfmt's text parser sees it, a byte-level filter keeps only the sample lines of the
// eight gitlab_runner_* families read here (and checks every line's first byte, so an HTML page or
// binary noise is still refused as garbled); each worker goroutine reuses one parser. Targets that
// timed out on the previous scrape are started first, so their wait overlaps everyone else's.
// BenchmarkTickVsFanout, BenchmarkHungTargets and BenchmarkPeakRSS measure the result.
package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// Defaults of Config.
const (
	// DefaultConcurrency bounds simultaneous requests: enough that a fleet of 1,000 runners is read
	// in well under a second on loopback, few enough not to exhaust file descriptors or a NAT table.
	DefaultConcurrency = 64
	// DefaultTimeout bounds one target (connect, headers and body). gitlab-runner answers /metrics
	// from memory in milliseconds; a runner that needs seconds is in trouble and is reported unknown
	// rather than holding up the tick.
	DefaultTimeout = 3 * time.Second
	// DefaultMaxBytes caps one response. A gitlab-runner exposition with Go and process metrics is
	// 20–60 KiB; 1 MiB leaves room for many [[runners]] sections and refuses a runaway endpoint.
	DefaultMaxBytes = 1 << 20
	// DefaultQueueStaleAfter is how old the queue gauges may be before they are stale: runners set
	// them only when they pick up a job, so an old value describes an old queue.
	DefaultQueueStaleAfter = 3 * time.Minute
	// DefaultRateWindow is the longest gap between two samples of an instance over which a counter
	// rate is still computed (ticks come every minute; a longer gap means ticks were missed or another
	// worker replica handled them, and a rate over it would blur what happened).
	DefaultRateWindow = 10 * time.Minute
)

// forgetAfter drops an instance's previous sample when it has not been scraped for this long
// (the instance is gone or another replica now ticks the fleet).
const forgetAfter = time.Hour

// Config tunes a Scraper. Zero fields take the defaults above.
type Config struct {
	// Concurrency is the largest number of targets fetched at once.
	Concurrency int
	// Timeout bounds each target.
	Timeout time.Duration
	// MaxBytes caps each response body; a larger one makes the instance unknown.
	MaxBytes int64
	// QueueStaleAfter is the age beyond which queue gauges are reported stale.
	QueueStaleAfter time.Duration
	// RateWindow is the longest gap over which counter rates are computed.
	RateWindow time.Duration
}

func (c *Config) setDefaults() {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.QueueStaleAfter == 0 {
		c.QueueStaleAfter = DefaultQueueStaleAfter
	}
	if c.RateWindow == 0 {
		c.RateWindow = DefaultRateWindow
	}
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("scrape concurrency %d: must be positive", c.Concurrency))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("scrape timeout %s: must be positive", c.Timeout))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("scrape max bytes %d: must be positive", c.MaxBytes))
	}
	if c.QueueStaleAfter < 0 {
		errs = append(errs, fmt.Errorf("scrape queue stale after %s: must be positive", c.QueueStaleAfter))
	}
	if c.RateWindow < 0 {
		errs = append(errs, fmt.Errorf("scrape rate window %s: must be positive", c.RateWindow))
	}
	return errors.Join(errs...)
}

// Target is one instance to scrape: the fields a metrics URL template may use.
type Target struct {
	InstanceID string
	PrivateIP  string
}

// Reason says why an instance is unknown.
type Reason string

// Reasons an instance is unknown. They name the failure, never the URL's secrets (metrics URLs
// hold none) nor the body.
const (
	ReasonNone         Reason = ""
	ReasonTimeout      Reason = "timeout"
	ReasonConnect      Reason = "connection failed"
	ReasonHTTPStatus   Reason = "http status"
	ReasonTooLarge     Reason = "response too large"
	ReasonGarbled      Reason = "unparseable exposition"
	ReasonNoConcurrent Reason = "no gitlab_runner_concurrent"
	ReasonBadURL       Reason = "bad metrics url"
	// ReasonNoAddress: the URL has no host, as when EC2 no longer lists the instance's private
	// address and the template uses it ("http://:9252/metrics" would dial this host itself).
	ReasonNoAddress Reason = "no address"
	ReasonCanceled  Reason = "canceled"
)

// Result is what one instance's runner reported.
type Result struct {
	InstanceID string
	// Known is false when the scrape failed; then Reason (and Err) say why and every other field
	// is zero and must not be read as "idle".
	Known  bool
	Reason Reason
	Err    error
	// At is when the response was read; Took how long the fetch and parse took.
	At   time.Time
	Took time.Duration

	// Concurrent is the process's `concurrent` setting.
	Concurrent int
	// Capacity is the job slots the runner offers: `concurrent`, bounded by the sum of the `limit`s
	// of its runner sections (0 = unlimited) whose job requests GitLab does not refuse. 0 when
	// GitLab refuses every section's token, or when the process has no runner section (its
	// config has no [[runners]]: registration failed or has not run), which takes no job.
	Capacity int
	// RunningJobs counts jobs in state "running"; BusyJobs adds those in any other non-idle state
	// (a job being prepared or finished still occupies the instance).
	RunningJobs int
	BusyJobs    int
	// Rejected is true when GitLab refused (401/403/410) every job request of every runner section
	// since the previous sample (or since start, on the first sample) and accepted none. A
	// section that made no job request since the previous sample (all its slots busy, or read
	// twice in a row) keeps its previous verdict. A runner that has made no job request yet is
	// not Rejected: it keeps its capacity.
	Rejected bool
	// Accepted is true when GitLab answered some job request with a success status (request_job
	// 201, job given, or 204, no job; gitlab-runner counts both in
	// gitlab_runner_api_request_statuses_total) since the runner process started, in a runner
	// section not Rejected now. This is DESIGN.md's health: a runner whose metrics answer but that
	// has not yet had a job request succeed (just started, token not yet checked, GitLab answering
	// 5xx) is neither Accepted nor Rejected. A busy runner making no requests stays Accepted: the
	// counters are cumulative. A first sample whose section shows refusals as well as successes
	// is not Accepted (the refusals may be the latest: a revoked token) until a later sample
	// shows its requests since.
	Accepted bool
	// Queue is the runner's view of the job queue.
	Queue Queue
}

// Queue is what gitlab-runner reports about GitLab's job queue. Runners update the gauges only
// when they pick up a job, so they carry an age.
type Queue struct {
	// Present is true when the runner exposes the queue gauges (it has picked up a job since start).
	Present bool
	// Size and Depth are gitlab_runner_job_queue_size and _depth summed over runner sections.
	Size  float64
	Depth float64
	// Age is an upper bound on how long ago the runner last set the gauges: the time since the
	// previous sample in which its job count had not yet moved. Zero with AgeKnown false when no
	// sample has shown an update yet.
	Age      time.Duration
	AgeKnown bool
	// Stale is true when the gauges are absent, of unknown age, or older than QueueStaleAfter.
	Stale bool
	// ExceededPerSecond is the rate of gitlab_runner_acceptable_job_queuing_duration_exceeded_total
	// since the previous sample; HasRate is false on the first sample or after a long gap.
	ExceededPerSecond float64
	HasRate           bool
}

// prev is what the Scraper remembers of an instance between ticks, for rates and ages.
type prev struct {
	at           time.Time
	sample       *sample
	queueUpdated time.Time // upper bound on the gauges' age, zero when unknown
	// rejected is each runner section's verdict at this sample, carried to the next one when the
	// section made no job request in between.
	rejected map[string]bool
	// unsure marks the sections whose counters, read with no earlier sample to subtract, show
	// both successes and refusals: which came last cannot be told (a token revoked after the
	// runner served reads as both), so the section is not Accepted until a later sample shows
	// its requests since. Carried like rejected.
	unsure map[string]bool
}

// Scraper fetches runner metrics. It is safe for concurrent use; it remembers each instance's
// previous sample (in memory, per process) to compute rates and the queue gauges' age.
type Scraper struct {
	cfg    Config
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	prevs     map[string]*prev
	timedOut  map[string]time.Time // targets whose last scrape timed out, and when
	templates map[string]*template.Template
	bufs      sync.Pool
}

// New returns a Scraper using client for every request. The client's own Timeout, if any, also
// applies; tests and the local world pass a client built on infra/netguard.
func New(cfg Config, client *http.Client) (*Scraper, error) {
	if client == nil {
		return nil, errors.New("new scraper: nil http client")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new scraper: %w", err)
	}
	return &Scraper{
		cfg:       cfg,
		client:    client,
		now:       time.Now,
		prevs:     map[string]*prev{},
		timedOut:  map[string]time.Time{},
		templates: map[string]*template.Template{},
		bufs:      sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}, nil
}

// CheckTemplate parses a metrics URL template and executes it on a sample target, so a bad
// fleet setting is refused at start-up rather than at the first tick.
func CheckTemplate(urlTemplate string) error {
	t, err := template.New("metrics_url").Option("missingkey=error").Parse(urlTemplate)
	if err != nil {
		return fmt.Errorf("parsing metrics url template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, Target{InstanceID: "i-0123456789abcdef0", PrivateIP: "10.0.0.1"}); err != nil {
		return fmt.Errorf("executing metrics url template: %w", err)
	}
	return nil
}

func (s *Scraper) template(text string) (*template.Template, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.templates[text]; ok {
		return t, nil
	}
	t, err := template.New("metrics_url").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics url template: %w", err)
	}
	s.templates[text] = t
	return t, nil
}

// Scrape fetches every target's metrics from the URL the template gives for it, at most
// Concurrency at a time, each within Timeout, and returns one Result per target in the order
// given. It returns an error only for a template that does not parse; a failed target is an
// unknown Result. When ctx ends, the targets not yet read are unknown with ReasonCanceled.
func (s *Scraper) Scrape(ctx context.Context, urlTemplate string, targets []Target) ([]Result, error) {
	tmpl, err := s.template(urlTemplate)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(targets))
	order := s.order(targets)
	workers := min(s.cfg.Concurrency, len(targets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var url strings.Builder
			parser := newParser()
			for i := range next {
				url.Reset()
				results[i] = s.one(ctx, tmpl, parser, &url, targets[i])
			}
		})
	}
feed:
	for k, i := range order {
		select {
		case next <- i:
		case <-ctx.Done():
			for _, j := range order[k:] {
				results[j] = Result{InstanceID: targets[j].InstanceID, Reason: ReasonCanceled, Err: ctx.Err(), At: s.now()}
			}
			break feed
		}
	}
	close(next)
	wg.Wait()
	s.remember(results)
	s.forget()
	return results, nil
}

// order returns the indices of targets with those that timed out last time first: a hung runner
// usually stays hung, and starting its wait first lets it overlap the others' work, so a tick
// with hung runners lasts about one Timeout rather than the rest's time plus a Timeout.
func (s *Scraper) order(targets []Target) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	order := make([]int, 0, len(targets))
	for i, t := range targets {
		if _, slow := s.timedOut[t.InstanceID]; slow {
			order = append(order, i)
		}
	}
	for i, t := range targets {
		if _, slow := s.timedOut[t.InstanceID]; !slow {
			order = append(order, i)
		}
	}
	return order
}

// remember notes which targets timed out this time.
func (s *Scraper) remember(results []Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range results {
		if r.Reason == ReasonTimeout {
			s.timedOut[r.InstanceID] = r.At
		} else if r.Reason != ReasonCanceled {
			delete(s.timedOut, r.InstanceID)
		}
	}
}

func (s *Scraper) one(ctx context.Context, tmpl *template.Template, parser *expfmt.TextParser, url *strings.Builder, t Target) Result {
	start := s.now()
	r := Result{InstanceID: t.InstanceID}
	fail := func(reason Reason, err error) Result {
		r.At = s.now()
		r.Took = r.At.Sub(start)
		r.Reason, r.Err = reason, fmt.Errorf("scraping runner metrics of %s: %w", t.InstanceID, err)
		return r
	}
	if err := tmpl.Execute(url, t); err != nil {
		return fail(ReasonBadURL, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url.String(), nil)
	if err != nil {
		return fail(ReasonBadURL, err)
	}
	if req.URL.Hostname() == "" {
		return fail(ReasonNoAddress, fmt.Errorf("metrics url %q has no host (no private address for the instance?)", url.String()))
	}
	// Ask for the text format: gitlab-runner's promhttp handler would otherwise negotiate.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer s.bufs.Put(buf)
	resp, err := s.client.Do(req)
	if err != nil {
		return fail(fetchReason(ctx, err), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return fail(ReasonHTTPStatus, fmt.Errorf("http status %d", resp.StatusCode))
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, s.cfg.MaxBytes+1))
	if err != nil {
		return fail(fetchReason(ctx, err), fmt.Errorf("reading body: %w", err))
	}
	if n > s.cfg.MaxBytes {
		return fail(ReasonTooLarge, fmt.Errorf("body exceeds %d bytes", s.cfg.MaxBytes))
	}
	filtered := s.bufs.Get().(*bytes.Buffer)
	filtered.Reset()
	defer s.bufs.Put(filtered)
	if err := filter(filtered, buf.Bytes()); err != nil {
		return fail(ReasonGarbled, err)
	}
	smp, err := parse(parser, filtered)
	if err != nil {
		return fail(ReasonGarbled, err)
	}
	if !smp.hasConcurrent {
		return fail(ReasonNoConcurrent, errors.New("gitlab_runner_concurrent is missing: not a gitlab-runner exposition"))
	}
	r.At = s.now()
	r.Took = r.At.Sub(start)
	s.interpret(&r, smp)
	return r
}

func fetchReason(ctx context.Context, err error) Reason {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case ctx.Err() != nil:
		return ReasonCanceled
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return ReasonTimeout
	}
	return ReasonConnect
}

// interpret fills r from the new sample and the instance's previous one, and remembers the new
// (after filling it).
func (s *Scraper) interpret(r *Result, cur *sample) {
	s.mu.Lock()
	p := s.prevs[r.InstanceID]
	s.mu.Unlock()
	// next is filled completely before it is remembered: a concurrent Scrape of the same
	// instance may read it as its p at once.
	next := &prev{at: r.At, sample: cur, rejected: make(map[string]bool, len(cur.runners)), unsure: map[string]bool{}}
	defer func() {
		s.mu.Lock()
		s.prevs[r.InstanceID] = next
		s.mu.Unlock()
	}()

	var old *sample
	if p != nil && r.At.Sub(p.at) <= s.cfg.RateWindow && r.At.After(p.at) {
		old = p.sample
	}
	r.Known = true
	r.Concurrent = int(cur.concurrent)
	r.RunningJobs = int(cur.running)
	r.BusyJobs = int(cur.running + cur.otherBusy)

	// Health and capacity per runner section. A process without any (gitlab-runner exports
	// gitlab_runner_limit for each [[runners]] section of its config) takes no job: no capacity.
	// Sections seen only in other series (no limit read) leave `concurrent` as the bound.
	capacity := 0.0
	if cur.sections && len(cur.runners) == 0 {
		capacity = math.Inf(1)
	}
	anyUnrefused, anyRejected := false, false
	for name, rs := range cur.runners {
		ok, rej := rs.requestOK, rs.requestRejected
		carried := false
		if old != nil {
			if o := old.runners[name]; o != nil && o.requestOK <= ok && o.requestRejected <= rej {
				ok, rej = ok-o.requestOK, rej-o.requestRejected
				carried = ok == 0 && rej == 0
			}
		}
		rejected := rej > 0 && ok == 0
		unsure := old == nil && rej > 0 && ok > 0
		if carried {
			// No job request since the previous sample: nothing new about the token.
			rejected, unsure = p.rejected[name], p.unsure[name]
		}
		next.rejected[name] = rejected
		if unsure {
			next.unsure[name] = true
		}
		anyRejected = anyRejected || rejected
		anyUnrefused = anyUnrefused || !rejected
		if !rejected && !unsure && rs.requestOK > 0 {
			r.Accepted = true
		}
		if rejected {
			continue
		}
		if !rs.hasLimit || rs.limit <= 0 {
			capacity = math.Inf(1)
		} else {
			capacity += rs.limit
		}
	}
	r.Rejected = anyRejected && !anyUnrefused
	r.Capacity = int(math.Min(cur.concurrent, capacity))
	if r.Rejected {
		r.Capacity = 0
	}

	// Queue gauges and their age.
	q := Queue{Present: cur.hasQueue, Size: cur.queueSize, Depth: cur.queueDepth}
	switch {
	case p != nil && cur.jobsTotal != p.sample.jobsTotal:
		// The runner picked up a job (or restarted) since the previous sample: the gauges were set
		// after it.
		next.queueUpdated = p.at
	case p != nil:
		next.queueUpdated = p.queueUpdated
	}
	if cur.hasQueue && !next.queueUpdated.IsZero() {
		q.Age, q.AgeKnown = r.At.Sub(next.queueUpdated), true
	}
	q.Stale = !cur.hasQueue || !q.AgeKnown || q.Age > s.cfg.QueueStaleAfter
	if old != nil && cur.hasExceeded && old.hasExceeded {
		delta := cur.exceeded - old.exceeded
		if delta < 0 { // counter reset: the process restarted
			delta = cur.exceeded
		}
		q.ExceededPerSecond = delta / r.At.Sub(p.at).Seconds()
		q.HasRate = true
	}
	r.Queue = q
}

// forget drops remembered samples of instances not scraped for a long time.
func (s *Scraper) forget() {
	cutoff := s.now().Add(-forgetAfter)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, p := range s.prevs {
		if p.at.Before(cutoff) {
			delete(s.prevs, id)
		}
	}
	for id, at := range s.timedOut {
		if at.Before(cutoff) {
			delete(s.timedOut, id)
		}
	}
}

// HTTPClient returns the client a worker scrapes with: no proxy (runners are private addresses a
// proxy cannot reach), enough idle connections to keep one per runner between ticks, and, when
// loopbackOnly is set (tests, the demo, benchmarks), a dialer refusing everything outside
// loopback. Per-target timeouts come from Config.Timeout, not from the client.
func HTTPClient(loopbackOnly bool) *http.Client {
	if loopbackOnly {
		return netguard.HTTPClient(0)
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: DefaultTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       2 * time.Minute, // longer than a tick, so connections are reused
		ResponseHeaderTimeout: DefaultTimeout,
	}}
}
