package marks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// fakeTable has the state table's conditional semantics; conflicts makes the next n saves lose.
type fakeTable struct {
	mu        sync.Mutex
	items     map[string]item
	conflicts int
}

type item struct {
	body     []byte
	version  int64
	finished bool
}

func newFakeTable() *fakeTable { return &fakeTable{items: map[string]item{}} }

func (f *fakeTable) Load(_ context.Context, pk, sk string) ([]byte, int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[pk+"|"+sk]
	return bytes.Clone(it.body), it.version, ok, nil
}

func (f *fakeTable) Save(_ context.Context, pk, sk string, body []byte, version int64, _, expires time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conflicts > 0 {
		f.conflicts--
		it := f.items[pk+"|"+sk]
		it.version++ // someone else wrote
		f.items[pk+"|"+sk] = it
		return false, nil
	}
	it, ok := f.items[pk+"|"+sk]
	if (version == 0 && ok) || (version > 0 && (!ok || it.version != version)) {
		return false, nil
	}
	f.items[pk+"|"+sk] = item{body: bytes.Clone(body), version: version + 1, finished: !expires.IsZero()}
	return true, nil
}

func (f *fakeTable) Unfinished(_ context.Context, prefix string) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]byte
	for k, it := range f.items {
		if strings.HasPrefix(k, prefix) && !it.finished {
			out = append(out, bytes.Clone(it.body))
		}
	}
	return out, nil
}

func TestStoreUpdateMergesAndRetriesLostRaces(t *testing.T) {
	tab := newFakeTable()
	s, err := NewStore(tab)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := s.Update(ctx, "i-1", func(m *interrupt.Mark) bool {
		m.Group, m.SpotInterrupted = "g", true
		return true
	})
	if err != nil || m.JobsAtNotice != -1 || m.Lost != -1 || !m.SpotInterrupted {
		t.Fatalf("new mark %+v, %v", m, err)
	}
	tab.conflicts = 2
	if _, err := s.Update(ctx, "i-1", func(m *interrupt.Mark) bool { m.IntakeStopped = true; return true }); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.Get(ctx, "i-1")
	if err != nil || !found || !got.SpotInterrupted || !got.IntakeStopped {
		t.Fatalf("mark %+v found %v err %v", got, found, err)
	}
	list, err := s.List(ctx, "g")
	if err != nil || len(list) != 1 {
		t.Fatalf("list %v %v", list, err)
	}
	for id, f := range map[string]func(m *interrupt.Mark){
		"i-s":    func(m *interrupt.Mark) { m.SpotInterrupted, m.IntakeStopped = true, true },
		"i-r":    func(m *interrupt.Mark) { m.RebalanceRecommended, m.IntakeStopped = true, true },
		"i-open": func(m *interrupt.Mark) { m.RebalanceRecommended = true },
	} {
		if _, err := s.Update(ctx, id, func(m *interrupt.Mark) bool { m.Group = "g2"; f(m); return true }); err != nil {
			t.Fatal(err)
		}
	}
	stopped, err := s.IntakeStopped(ctx, "g2")
	if err != nil || len(stopped) != 2 || !strings.Contains(stopped["i-s"], "spot") || !strings.Contains(stopped["i-r"], "rebalance") {
		t.Fatalf("IntakeStopped = %v, %v; want i-s (spot) and i-r (rebalance), not i-open", stopped, err)
	}
	if _, err := s.Update(ctx, "i-1", func(m *interrupt.Mark) bool { m.Gone = true; return true }); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx, "g"); len(list) != 0 {
		t.Fatalf("a gone instance is still listed: %v", list)
	}
	tab.conflicts = 100
	if _, err := s.Update(ctx, "i-2", func(m *interrupt.Mark) bool { return true }); err == nil {
		t.Fatal("endless lost races must fail")
	}
}

// A mark this version cannot read fails only its own group's listing: other fleets' ticks go on.
func TestUnreadableMarkFailsOnlyItsGroup(t *testing.T) {
	tab := newFakeTable()
	s, err := NewStore(tab)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Update(ctx, "i-ok", func(m *interrupt.Mark) bool { m.Group, m.SpotInterrupted = "g", true; return true }); err != nil {
		t.Fatal(err)
	}
	if ok, _ := tab.Save(ctx, keyPrefix+"i-odd", sortKey, []byte(`{"group":"other","jobs_at_notice":"three"}`), 0, time.Time{}, time.Time{}); !ok {
		t.Fatal("seed")
	}
	if list, err := s.List(ctx, "g"); err != nil || len(list) != 1 || list[0].InstanceID != "i-ok" {
		t.Fatalf("List(g) = %v, %v; want i-ok, the other group's unreadable mark skipped", list, err)
	}
	if _, err := s.List(ctx, "other"); err == nil || !strings.Contains(err.Error(), "unreadable mark") {
		t.Fatalf("List(other) = %v; want its unreadable mark to fail it", err)
	}
}

type fakeGroup struct{ scale.Group }

func (fakeGroup) Describe(context.Context, string) (scale.GroupState, error) {
	return scale.GroupState{Name: "g", Members: []scale.Member{
		{Instance: fleet.Instance{ID: "i-1", State: fleet.StateInService}},
		{Instance: fleet.Instance{ID: "i-2", State: fleet.StateInService}},
		{Instance: fleet.Instance{ID: "i-3", State: fleet.StateInService}},
	}}, nil
}

type listFunc func() ([]interrupt.Mark, error)

func (f listFunc) List(context.Context, string) ([]interrupt.Mark, error) { return f() }

func TestGroupMergesMarks(t *testing.T) {
	g := Group{Group: fakeGroup{}, Marks: listFunc(func() ([]interrupt.Mark, error) {
		return []interrupt.Mark{
			{InstanceID: "i-1", SpotInterrupted: true, IntakeStopped: true},
			{InstanceID: "i-2", RebalanceRecommended: true},
		}, nil
	})}
	st, err := g.Describe(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	i1, i2, i3 := st.Members[0].Instance, st.Members[1].Instance, st.Members[2].Instance
	if !i1.SpotInterrupted || !i1.IntakeStopped || !i2.RebalanceRecommended || i2.IntakeStopped || i3.SpotInterrupted || i3.RebalanceRecommended {
		t.Fatalf("merged %+v %+v %+v", i1, i2, i3)
	}
	bad := Group{Group: fakeGroup{}, Marks: listFunc(func() ([]interrupt.Mark, error) { return nil, errors.New("boom") })}
	if _, err := bad.Describe(context.Background(), "g"); err == nil {
		t.Fatal("a failed mark read must fail the describe")
	}
}

func putDrain(t *testing.T, tab *fakeTable, token string, rec map[string]any) {
	t.Helper()
	b, _ := json.Marshal(rec)
	if ok, _ := tab.Save(context.Background(), drainPrefix+token, drainSortKey, b, 0, time.Time{}, time.Time{}); !ok {
		t.Fatal("seed drain")
	}
}

func TestDrainsFinishLost(t *testing.T) {
	tab := newFakeTable()
	d, err := NewDrains(tab)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	putDrain(t, tab, "tok-a", map[string]any{"token": "tok-a", "fleet": "blue", "instance_id": "i-a", "phase": "watch", "jobs": 2, "heartbeats": 4})
	putDrain(t, tab, "tok-b", map[string]any{"token": "tok-b", "fleet": "blue", "instance_id": "i-b", "phase": "watch", "jobs": 1,
		"lease": map[string]any{"owner": "x", "until": now.Add(time.Minute)}})
	putDrain(t, tab, "tok-c", map[string]any{"token": "tok-c", "fleet": "blue", "instance_id": "i-c", "phase": "complete", "jobs": 0})
	ctx := context.Background()

	found, fl, lost, err := d.FinishLost(ctx, "i-a", "terminated", -1)
	if err != nil || !found || fl != "blue" || lost != 2 {
		t.Fatalf("i-a: %v %q %d %v", found, fl, lost, err)
	}
	body, _, _, _ := tab.Load(ctx, drainPrefix+"tok-a", drainSortKey)
	var rec map[string]any
	_ = json.Unmarshal(body, &rec)
	if rec["phase"] != "done" || rec["outcome"] != "lost" || rec["heartbeats"] != 4.0 || rec["jobs"] != 2.0 {
		t.Fatalf("record %v: other fields must survive", rec)
	}
	if found, _, _, _ := d.FinishLost(ctx, "i-a", "terminated", -1); found {
		t.Fatal("a second state change must find nothing")
	}
	if _, _, _, err := d.FinishLost(ctx, "i-b", "stopping", -1); !errors.Is(err, interrupt.ErrDrainBusy) {
		t.Fatalf("leased drain: %v, want ErrDrainBusy", err)
	}
	if found, _, _, err := d.FinishLost(ctx, "i-c", "terminated", -1); found || err != nil {
		t.Fatalf("completing drain: %v %v, want left alone", found, err)
	}
	if found, _, _, err := d.FinishLost(ctx, "i-zzz", "terminated", 3); found || err != nil {
		t.Fatalf("no drain: %v %v", found, err)
	}
}

const page = `# TYPE gitlab_runner_concurrent gauge
gitlab_runner_concurrent 4
# TYPE gitlab_runner_jobs gauge
gitlab_runner_jobs{runner="a",state="idle",stage="idle",executor_stage="idle"} 0
gitlab_runner_jobs{runner="a",state="running",stage="step_script",executor_stage="docker_run"} 2
# TYPE gitlab_runner_api_request_statuses_total counter
gitlab_runner_api_request_statuses_total{runner="a",endpoint="request_job",status="201",method="post"} 3
gitlab_runner_api_request_statuses_total{runner="a",endpoint="request_job",status="204",method="post"} 5
gitlab_runner_api_request_statuses_total{runner="a",endpoint="request_job",status="403",method="post"} 7
gitlab_runner_api_request_statuses_total{runner="a",endpoint="update_job",status="200",method="put"} 100
`

func TestRunnersReadsRequestJobsAndJobs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/instances/i-1/metrics":
			_, _ = w.Write([]byte(page))
		case "/instances/i-2/metrics":
			w.WriteHeader(http.StatusInternalServerError)
		case "/instances/i-4/metrics":
			// Past the cap, cut at a line boundary: it would parse, with the jobs series lost.
			_, _ = w.Write([]byte(page))
			pad := []byte("# HELP padding " + strings.Repeat("x", 1000) + "\n")
			for range maxMetricsBytes/len(pad) + 1 {
				_, _ = w.Write(pad)
			}
			_, _ = w.Write([]byte("gitlab_runner_jobs{runner=\"a\",state=\"running\"} 9\n"))
		default:
			_, _ = w.Write([]byte("<html>not metrics"))
		}
	}))
	defer srv.Close()
	r, err := NewRunners(netguard.HTTPClient(2*time.Second), []fleet.Settings{{Name: "blue", MetricsURL: srv.URL + "/instances/{{.InstanceID}}/metrics"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok, rej, err := r.RequestJobs(ctx, "blue", "i-1")
	if err != nil || ok != 8 || rej != 7 {
		t.Fatalf("request_job ok %v rejected %v err %v", ok, rej, err)
	}
	if n, err := r.RunningJobs(ctx, "blue", "i-1"); err != nil || n != 2 {
		t.Fatalf("jobs %d %v", n, err)
	}
	for _, id := range []string{"i-2", "i-3"} {
		if _, _, err := r.RequestJobs(ctx, "blue", id); err == nil {
			t.Errorf("%s: want an error", id)
		}
	}
	if n, err := r.RunningJobs(ctx, "blue", "i-4"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a page past the cap: %d jobs, err %v; want an error, not a count", n, err)
	}
	if _, err := NewRunners(netguard.HTTPClient(time.Second), []fleet.Settings{{Name: "x"}}, nil); err == nil {
		t.Error("a PrivateIP template without an address lookup must be refused")
	}
}

func TestWireRefusesMissingClients(t *testing.T) {
	if _, err := Wire(WireConfig{}, WireClients{}, nil, nil); err == nil {
		t.Fatal("Wire accepted no clients")
	}
}
