package state_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/aws/state"
)

// memTable is a race-safe, in-memory state.Versioned with Table's conditional-write contract.
type memTable struct {
	mu    sync.Mutex
	items map[[2]string]memItem
	fail  error
}

type memItem struct {
	body    []byte
	version int64
	expires time.Time
}

func (m *memTable) Load(_ context.Context, pk, sk string) ([]byte, int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, 0, false, m.fail
	}
	it, ok := m.items[[2]string{pk, sk}]
	return it.body, it.version, ok, nil
}

func (m *memTable) Save(_ context.Context, pk, sk string, body []byte, version int64, _, expires time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	if m.items == nil {
		m.items = map[[2]string]memItem{}
	}
	if m.items[[2]string{pk, sk}].version != version {
		return false, nil
	}
	m.items[[2]string{pk, sk}] = memItem{body: body, version: version + 1, expires: expires}
	return true, nil
}

type rec struct {
	N    int               `json:"n"`
	Tags map[string]string `json:"tags,omitempty"`
}

func TestFleetRecords(t *testing.T) {
	ctx := context.Background()
	tbl := &memTable{}
	recs, err := state.NewFleetRecords[rec](tbl, "scale")
	if err != nil {
		t.Fatal(err)
	}
	if got, v, err := recs.Load(ctx, "blue"); err != nil || v != 0 || got.N != 0 {
		t.Fatalf("fresh fleet: %+v v%d %v", got, v, err)
	}
	if ok, err := recs.Save(ctx, "blue", rec{N: 1}, 0, time.Time{}); !ok || err != nil {
		t.Fatalf("first save: %v %v", ok, err)
	}
	it, ok := tbl.items[[2]string{"fleet#blue", "scale"}]
	if !ok || !it.expires.IsZero() {
		t.Fatalf("stored under %v, want fleet#blue/scale without expiry", tbl.items)
	}
	if ok, err := recs.Save(ctx, "blue", rec{N: 9}, 0, time.Time{}); ok || err != nil {
		t.Fatalf("stale save: ok=%v err=%v, want false, nil", ok, err)
	}
	exp := time.Unix(1000, 0)
	if ok, err := recs.Save(ctx, "blue", rec{N: 2}, 1, exp); !ok || err != nil {
		t.Fatalf("second save: %v %v", ok, err)
	}
	if got, v, err := recs.Load(ctx, "blue"); err != nil || v != 2 || got.N != 2 {
		t.Fatalf("load: %+v v%d %v", got, v, err)
	}
	if it := tbl.items[[2]string{"fleet#blue", "scale"}]; !it.expires.Equal(exp) {
		t.Fatalf("expires %v, want %v", it.expires, exp)
	}

	// A garbled body is an error and the zero record, never a silent reset.
	tbl.items[[2]string{"fleet#blue", "scale"}] = memItem{body: []byte(`{"n":3,"tags":[`), version: 3}
	got, v, err := recs.Load(ctx, "blue")
	if err == nil || v != 0 || got.N != 0 || !strings.Contains(err.Error(), "decoding scale record of fleet blue (version 3)") {
		t.Fatalf("garbled: %+v v%d %v", got, v, err)
	}

	boom := errors.New("boom")
	tbl.fail = boom
	if _, _, err := recs.Load(ctx, "blue"); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "loading scale record of fleet blue: ") {
		t.Errorf("load error %v", err)
	}
	if _, err := recs.Save(ctx, "blue", rec{}, 3, time.Time{}); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "saving scale record of fleet blue: ") {
		t.Errorf("save error %v", err)
	}
	if _, err := state.NewFleetRecords[rec](nil, "scale"); err == nil {
		t.Error("nil table accepted")
	}
}
