package state_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// newTable starts an emulator and creates a state table in it.
func newTable(t *testing.T) (*state.Table, *dynamodb.Client, string) {
	t.Helper()
	e := emulator.Start(t, emulator.Options{})
	client := dynamodb.NewFromConfig(e.AWSConfig(t))
	name := emulator.UniqueName(t, "runnerfleet-state")
	if err := state.CreateTable(context.Background(), client, name); err != nil {
		t.Fatal(err)
	}
	tbl, err := state.New(client, name)
	if err != nil {
		t.Fatal(err)
	}
	return tbl, client, name
}

// The adapter against the emulator's DynamoDB: the conditional writes that drains and fleet-level
// work rely on.
func TestTableConditionalWrites(t *testing.T) {
	ctx := context.Background()
	tbl, client, name := newTable(t)
	if err := state.CreateTable(ctx, client, name); err != nil {
		t.Fatalf("creating an existing table again: %v", err)
	}

	t.Run("claim once among many", func(t *testing.T) {
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := tbl.Save(ctx, "drain#tok-1", "drain", []byte(`{"n":1}`), 0, time.Now(), time.Time{})
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if got := wins.Load(); got != 1 {
			t.Fatalf("%d claims won, want exactly 1", got)
		}
		body, v, found, err := tbl.Load(ctx, "drain#tok-1", "drain")
		if err != nil || !found || v != 1 || string(body) != `{"n":1}` {
			t.Fatalf("Load = %q, %d, %v, %v; want the claimed record at version 1", body, v, found, err)
		}
	})

	t.Run("writes conditioned on the version read", func(t *testing.T) {
		ok, err := tbl.Save(ctx, "drain#tok-2", "drain", []byte(`a`), 0, time.Time{}, time.Time{})
		if err != nil || !ok {
			t.Fatalf("create: %v %v", ok, err)
		}
		ok, err = tbl.Save(ctx, "drain#tok-2", "drain", []byte(`b`), 1, time.Time{}, time.Time{})
		if err != nil || !ok {
			t.Fatalf("write on version 1: %v %v", ok, err)
		}
		// A stale writer that read version 1 loses and changes nothing.
		ok, err = tbl.Save(ctx, "drain#tok-2", "drain", []byte(`stale`), 1, time.Time{}, time.Time{})
		if err != nil || ok {
			t.Fatalf("stale write = %v, %v; want false, nil", ok, err)
		}
		body, v, _, _ := tbl.Load(ctx, "drain#tok-2", "drain")
		if v != 2 || string(body) != "b" {
			t.Fatalf("after a stale write: %q version %d, want b version 2", body, v)
		}
	})

	t.Run("missing record", func(t *testing.T) {
		_, v, found, err := tbl.Load(ctx, "drain#none", "drain")
		if err != nil || found || v != 0 {
			t.Fatalf("Load of a missing record = %d, %v, %v", v, found, err)
		}
		ok, err := tbl.Save(ctx, "drain#none", "drain", []byte(`x`), 3, time.Time{}, time.Time{})
		if err != nil || ok {
			t.Fatalf("update of a missing record = %v, %v; want false, nil", ok, err)
		}
	})

	t.Run("unfinished lists only open records of the prefix", func(t *testing.T) {
		must := func(ok bool, err error) {
			t.Helper()
			if err != nil || !ok {
				t.Fatalf("save: %v %v", ok, err)
			}
		}
		must(tbl.Save(ctx, "sweep#open", "drain", []byte(`open`), 0, time.Now(), time.Time{}))
		must(tbl.Save(ctx, "sweep#done", "drain", []byte(`x`), 0, time.Now(), time.Time{}))
		must(tbl.Save(ctx, "sweep#done", "drain", []byte(`done`), 1, time.Time{}, time.Now().Add(time.Hour)))
		must(tbl.Save(ctx, "fleet#sweep", "scale", []byte(`other`), 0, time.Now(), time.Time{}))
		bodies, err := tbl.Unfinished(ctx, "sweep#")
		if err != nil {
			t.Fatal(err)
		}
		if len(bodies) != 1 || string(bodies[0]) != "open" {
			t.Fatalf("Unfinished = %q, want [open]", bodies)
		}
	})
}

func TestNewRefusesNil(t *testing.T) {
	if _, err := state.New(nil, ""); err == nil {
		t.Fatal("New(nil, \"\") succeeded")
	}
}

// Conditional writes are atomic in DynamoDB: of many concurrent claims of one record exactly
// one wins, and of many writers of the same version exactly one advances it. Many records at
// once, so that a check-then-store race in the emulator (moto checked the condition and stored
// the item with nothing between them) shows up in one run rather than one CI run in twenty.
func TestConcurrentWritesOneWinnerEach(t *testing.T) {
	ctx := context.Background()
	tbl, _, _ := newTable(t)
	// 480 requests at once, past werkzeug's default listen backlog (128): before the emulator's
	// launcher raised it, the kernel reset the excess connections (9 resets in one run, and the
	// SDK's retries ran out).
	const rounds, records, writers = 2, 40, 12
	race := func(round int, version int64) [records]int32 {
		var wins [records]atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for r := range records {
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					body := fmt.Sprintf(`{"writer":%d}`, w)
					ok, err := tbl.Save(ctx, fmt.Sprintf("drain#tok-%d-%d", round, r), "drain", []byte(body), version, time.Time{}, time.Time{})
					if err != nil {
						t.Error(err)
					}
					if ok {
						wins[r].Add(1)
					}
				}()
			}
		}
		close(start)
		wg.Wait()
		var out [records]int32
		for r := range out {
			out[r] = wins[r].Load()
		}
		return out
	}
	for round := range rounds {
		for _, version := range []int64{0, 1} { // claims, then writes conditioned on version 1
			for r, n := range race(round, version) {
				if n != 1 {
					t.Errorf("round %d, record %d, writes of version %d: %d won, want exactly 1", round, r, version+1, n)
				}
			}
		}
	}
}
