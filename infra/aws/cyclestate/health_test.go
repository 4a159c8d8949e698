package cyclestate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// runnerPages serves one metrics page per instance at /instances/{id}/metrics, on loopback.
type runnerPages struct {
	mu    sync.Mutex
	pages map[string]string
	srv   *httptest.Server
}

func newRunnerPages(t *testing.T) *runnerPages {
	t.Helper()
	p := &runnerPages{pages: map[string]string{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/instances/"), "/metrics")
		p.mu.Lock()
		page, ok := p.pages[id]
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *runnerPages) set(id, page string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pages[id] = page
}

// page is a gitlab-runner page with concurrent 2 and the given request_job status lines.
func page(requestJobs ...string) string {
	var b strings.Builder
	b.WriteString("gitlab_runner_concurrent 2\n")
	b.WriteString(`gitlab_runner_limit{runner="aaaaaaaa",system_id="s_1"} 0` + "\n")
	for _, l := range requestJobs {
		b.WriteString(`gitlab_runner_api_request_statuses_total{endpoint="request_job",method="post",runner="aaaaaaaa",` + l + "\n")
	}
	return b.String()
}

// TestHealthNeedsASuccessfulJobRequest checks issue 10's health over real scrapes: a replacement
// whose runner serves its metrics (concurrent is config, always there) but whose job requests have
// not succeeded is not healthy; it becomes healthy with its first 201 or 204, and a refused
// token makes it unhealthy and rejected again.
func TestHealthNeedsASuccessfulJobRequest(t *testing.T) {
	t.Parallel()
	pages := newRunnerPages(t)
	s, err := scrape.New(scrape.Config{}, netguard.HTTPClient(0))
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHealth(s)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pages.srv.URL + "/instances/{{.InstanceID}}/metrics"
	targets := []cycle.Target{{InstanceID: "i-fresh"}, {InstanceID: "i-5xx"}, {InstanceID: "i-204"}, {InstanceID: "i-201"}, {InstanceID: "i-403"}, {InstanceID: "i-gone"}}
	pages.set("i-fresh", page())
	pages.set("i-5xx", page(`status="502",system_id="s_1"} 6`))
	pages.set("i-204", page(`status="204",system_id="s_1"} 1`))
	pages.set("i-201", page(`status="201",system_id="s_1"} 1`))
	pages.set("i-403", page(`status="403",system_id="s_1"} 5`))
	check := func() map[string]cycle.Runner {
		t.Helper()
		rs, err := h.Check(context.Background(), tmpl, targets)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != len(targets) {
			t.Fatalf("%d runners for %d targets", len(rs), len(targets))
		}
		out := map[string]cycle.Runner{}
		for i, r := range rs {
			if r.InstanceID != targets[i].InstanceID {
				t.Fatalf("runner %d is %s, want %s (targets' order)", i, r.InstanceID, targets[i].InstanceID)
			}
			out[r.InstanceID] = r
		}
		return out
	}
	want := map[string]cycle.Runner{
		"i-fresh": {InstanceID: "i-fresh", Known: true, Capacity: 2},
		"i-5xx":   {InstanceID: "i-5xx", Known: true, Capacity: 2},
		"i-204":   {InstanceID: "i-204", Known: true, Healthy: true, Capacity: 2},
		"i-201":   {InstanceID: "i-201", Known: true, Healthy: true, Capacity: 2},
		"i-403":   {InstanceID: "i-403", Known: true, Rejected: true},
		"i-gone":  {InstanceID: "i-gone", Reason: string(scrape.ReasonHTTPStatus)},
	}
	got := check()
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %+v, want %+v", id, got[id], w)
		}
	}

	// The fresh runner's first job request succeeds; the accepted one's token is revoked.
	pages.set("i-fresh", page(`status="204",system_id="s_1"} 1`))
	pages.set("i-204", page(`status="204",system_id="s_1"} 1`, `status="403",system_id="s_1"} 3`))
	got = check()
	if r := got["i-fresh"]; !r.Healthy {
		t.Errorf("i-fresh after its first 204: %+v, want healthy", r)
	}
	if r := got["i-204"]; r.Healthy || !r.Rejected {
		t.Errorf("i-204 after only 403s: %+v, want rejected and not healthy", r)
	}
}

// TestHealthTellsTheWorkersFailuresFromTheRunners checks whose failure a look that read nothing
// was. The worker's: EC2 throttled the DescribeInstances that finds the runners' addresses (the
// group is still described; a template that needs the address is not even tried, one that does
// not is scraped as usual), its egress guard refused the address, its context ended, the URL
// could not be made. The runner's: a runner on 127.0.0.1 that refuses the connection.
func TestHealthTellsTheWorkersFailuresFromTheRunners(t *testing.T) {
	t.Parallel()
	pages := newRunnerPages(t)
	pages.set("i-1", page(`status="204",system_id="s_1"} 1`))
	refusing := httptest.NewServer(http.NotFoundHandler())
	refusing.Close() // its loopback port now refuses connections
	s, err := scrape.New(scrape.Config{}, netguard.HTTPClient(0))
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHealth(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(ctx context.Context, tmpl string, target cycle.Target) cycle.Runner {
		t.Helper()
		rs, err := h.Check(ctx, tmpl, []cycle.Target{target})
		if err != nil || len(rs) != 1 {
			t.Fatalf("Check(%s): %v, %v", tmpl, rs, err)
		}
		return rs[0]
	}

	// EC2 throttles the worker's DescribeInstances: the group is described, its addresses are not.
	throttled := &smithy.GenericAPIError{Code: "RequestLimitExceeded", Message: "Request limit exceeded."}
	g, _ := NewGroup(group("1"), &fakeEC2{instancesErr: throttled})
	st, err := g.Describe(ctx, "grp")
	if err != nil {
		t.Fatal(err)
	}
	m := st.Members[0]
	target := cycle.Target{InstanceID: m.ID, PrivateIP: m.PrivateIP, AddressErr: st.AddressErr}
	if r := check(ctx, "http://{{.PrivateIP}}:9252/metrics", target); r.Worker != cycle.WorkerThrottled || r.Known || r.Healthy ||
		!strings.Contains(r.Reason, "RequestLimitExceeded") {
		t.Errorf("address not read, template needs it: %+v; want the worker's failure (throttled)", r)
	}
	if r := check(ctx, pages.srv.URL+"/instances/{{.InstanceID}}/metrics", cycle.Target{InstanceID: "i-1", AddressErr: st.AddressErr}); !r.Healthy || r.Worker != "" {
		t.Errorf("address not read, template does not need it: %+v; want the runner read, healthy", r)
	}

	// A runner on loopback that refuses the connection: the runner's failure.
	if r := check(ctx, refusing.URL+"/metrics/{{.InstanceID}}", cycle.Target{InstanceID: "i-2"}); r.Known || r.Worker != "" || r.Reason != string(scrape.ReasonConnect) {
		t.Errorf("runner refusing: %+v; want the runner's failure (connection failed)", r)
	}
	// The worker's egress guard refuses a non-loopback address before any packet leaves.
	if r := check(ctx, "http://{{.PrivateIP}}:9252/metrics", cycle.Target{InstanceID: "i-3", PrivateIP: "10.0.0.9"}); r.Worker != cycle.WorkerNetwork {
		t.Errorf("egress guard: %+v; want the worker's failure (network)", r)
	}
	// The URL cannot be made from the template.
	if r := check(ctx, "http://127.0.0.1:9/{{.Nope}}", cycle.Target{InstanceID: "i-4"}); r.Worker != cycle.WorkerURLTemplate {
		t.Errorf("template: %+v; want the worker's failure (url-template)", r)
	}
	// The worker's context ended: the runner was not given its time.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if r := check(done, pages.srv.URL+"/instances/{{.InstanceID}}/metrics", cycle.Target{InstanceID: "i-1"}); r.Worker != cycle.WorkerDeadline || r.Known {
		t.Errorf("context ended: %+v; want the worker's failure (deadline)", r)
	}
}
