package state_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// newTable starts an emulator and creates a state table in it.
func newTable(t *testing.T) (*state.Table, *dynamodb.Client, string) { return newTableB(t) }

// newTableB is newTable for tests and benchmarks.
func newTableB(t testing.TB) (*state.Table, *dynamodb.Client, string) {
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
		// A finished record that is written again unfinished is listed again; a longer prefix
		// narrows the kind.
		must(tbl.Save(ctx, "sweep#done", "drain", []byte(`reopened`), 2, time.Now(), time.Time{}))
		bodies, err = tbl.Unfinished(ctx, "sweep#d")
		if err != nil {
			t.Fatal(err)
		}
		if len(bodies) != 1 || string(bodies[0]) != "reopened" {
			t.Fatalf("Unfinished(sweep#d) = %q, want [reopened]", bodies)
		}
		if _, err := tbl.Unfinished(ctx, "sweep"); err == nil || !strings.Contains(err.Error(), "names no kind") {
			t.Fatalf("Unfinished(sweep) = %v; want a prefix naming no kind refused", err)
		}
	})
}

// A table whose records were written before the index existed: Backfill gives the unfinished
// ones the open attribute without changing their version or body, and leaves finished ones out.
func TestBackfillListsRecordsWrittenBeforeTheIndex(t *testing.T) {
	ctx := context.Background()
	tbl, client, name := newTable(t)
	old := func(pk, body string, version int, finished bool) {
		t.Helper()
		item := map[string]types.AttributeValue{
			state.AttrPK:      &types.AttributeValueMemberS{Value: pk},
			state.AttrSK:      &types.AttributeValueMemberS{Value: "drain"},
			state.AttrVersion: &types.AttributeValueMemberN{Value: fmt.Sprint(version)},
			state.AttrBody:    &types.AttributeValueMemberS{Value: body},
		}
		if finished {
			item[state.AttrExpiresAt] = &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(time.Hour).Unix())}
		}
		if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: &name, Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	old("drain#old-open", "old-open", 3, false)
	old("drain#old-done", "old-done", 4, true)
	if _, err := tbl.Save(ctx, "drain#new", "drain", []byte("new"), 0, time.Now(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	list := func() string {
		t.Helper()
		bodies, err := tbl.Unfinished(ctx, "drain#")
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, 0, len(bodies))
		for _, b := range bodies {
			got = append(got, string(b))
		}
		slices.Sort(got)
		return strings.Join(got, ",")
	}
	if got := list(); got != "new" {
		t.Fatalf("before the backfill Unfinished = %s; want only the record written with the index", got)
	}
	n, err := tbl.Backfill(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Backfill = %d, %v; want 1 record marked", n, err)
	}
	if got := list(); got != "new,old-open" {
		t.Fatalf("after the backfill Unfinished = %s; want new,old-open", got)
	}
	body, v, _, err := tbl.Load(ctx, "drain#old-open", "drain")
	if err != nil || v != 3 || string(body) != "old-open" {
		t.Fatalf("backfilled record = %q version %d (%v); want it unchanged at version 3", body, v, err)
	}
	if n, err := tbl.Backfill(ctx); err != nil || n != 0 {
		t.Fatalf("second Backfill = %d, %v; want nothing left to mark", n, err)
	}
}

// A table made before the index existed (an earlier worker stack, or one whose index is still
// being built): listings scan it instead and still find every unfinished record, and IndexReady
// says what to do. On a table with the index, IndexReady is nil.
func TestWithoutTheIndexListingsScanAndIndexReadySaysWhy(t *testing.T) {
	ctx := context.Background()
	e := emulator.Start(t, emulator.Options{})
	client := dynamodb.NewFromConfig(e.AWSConfig(t))
	name := emulator.UniqueName(t, "runnerfleet-old")
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   &name,
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(state.AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(state.AttrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(state.AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(state.AttrSK), KeyType: types.KeyTypeRange},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := state.New(client, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		pk       string
		finished bool
	}{{"drain#a", false}, {"drain#b", true}, {"launch#c", false}} {
		var expires time.Time
		if r.finished {
			expires = time.Now().Add(time.Hour)
		}
		if ok, err := tbl.Save(ctx, r.pk, "x", []byte(r.pk), 0, time.Time{}, expires); err != nil || !ok {
			t.Fatalf("Save(%s) = %v, %v", r.pk, ok, err)
		}
	}
	bodies, err := tbl.Unfinished(ctx, "drain#")
	if err != nil || len(bodies) != 1 || string(bodies[0]) != "drain#a" {
		t.Fatalf("Unfinished without the index = %q, %v; want [drain#a] from a scan", bodies, err)
	}
	if err := tbl.IndexReady(ctx); err == nil || !strings.Contains(err.Error(), "update the worker stack") {
		t.Errorf("IndexReady without the index = %v; want it to say to update the worker stack", err)
	}
	withIndex, _, _ := newTable(t)
	if err := withIndex.IndexReady(ctx); err != nil {
		t.Errorf("IndexReady with the index = %v", err)
	}
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
