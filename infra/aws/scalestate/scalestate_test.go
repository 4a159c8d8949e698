package scalestate_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/scalestate"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/scaling"
)

// The store against the emulator's DynamoDB: round trip, and one winner among racing savers.
func TestStoreAgainstEmulator(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	ctx := context.Background()
	client := dynamodb.NewFromConfig(e.AWSConfig(t))
	name := emulator.UniqueName(t, "runnerfleet-state")
	if err := state.CreateTable(ctx, client, name); err != nil {
		t.Fatal(err)
	}
	tbl, err := state.New(client, name)
	if err != nil {
		t.Fatal(err)
	}
	store, err := scalestate.New(tbl)
	if err != nil {
		t.Fatal(err)
	}

	rec, ver, err := store.Load(ctx, "docker")
	if err != nil || ver != 0 || rec.Pin != nil {
		t.Fatalf("fresh fleet: %+v v%d %v", rec, ver, err)
	}
	since := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	want := scale.Record{
		Scaling:       scaling.State{SpareSince: since, IdleSince: map[string]time.Time{"i-1": since}},
		Pin:           &scale.Pin{Desired: 4, Until: since.Add(time.Hour), CommandID: "c-1", Issuer: "alice"},
		LastMessageID: "tick-1",
	}
	if ok, err := store.Save(ctx, "docker", want, 0); !ok || err != nil {
		t.Fatalf("first save: %v %v", ok, err)
	}
	got, ver, err := store.Load(ctx, "docker")
	if err != nil || ver != 1 {
		t.Fatalf("load after save: v%d %v", ver, err)
	}
	if !got.Scaling.SpareSince.Equal(since) || !got.Scaling.IdleSince["i-1"].Equal(since) || got.Pin == nil ||
		got.Pin.Desired != 4 || !got.Pin.Until.Equal(since.Add(time.Hour)) || got.LastMessageID != "tick-1" {
		t.Errorf("round trip: got %+v (pin %+v)", got, got.Pin)
	}
	if ok, err := store.Save(ctx, "docker", want, 0); ok || err != nil {
		t.Errorf("save with a stale version: ok=%v err=%v, want false, nil", ok, err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			ok, err := store.Save(ctx, "docker", scale.Record{LastMessageID: "tick-2"}, 1)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d savers of version 1 won, want exactly 1", wins.Load())
	}
	if _, err := scalestate.New(nil); err == nil {
		t.Error("nil table accepted")
	}
}
