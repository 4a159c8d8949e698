package cyclestate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

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
