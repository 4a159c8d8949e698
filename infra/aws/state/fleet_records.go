package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Versioned is the part of Table that FleetRecords uses: Load and Save with Table's contract.
type Versioned interface {
	Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error)
	Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error)
}

// FleetKey returns the partition key of a fleet's records, "fleet#<name>". A fleet's records
// (scale, cycle, update) share it, each under its own sort key, so they never collide with
// per-instance or per-drain records.
func FleetKey(fleetName string) string { return "fleet#" + fleetName }

// FleetRecords keeps one record of type R per fleet, as JSON in the body of the item
// (FleetKey(fleet), kind). The item's version is the optimistic lock: Save is conditioned on the
// version Load returned. It is safe for concurrent use.
type FleetRecords[R any] struct {
	table Versioned
	kind  string
}

// NewFleetRecords returns the store of the fleets' records of one kind, which is both the sort
// key and the name the errors use ("loading <kind> record of fleet <name>: …"). It refuses a nil
// table (the error, "nil state table", is for the caller to prefix).
func NewFleetRecords[R any](table Versioned, kind string) (*FleetRecords[R], error) {
	if table == nil {
		return nil, errors.New("nil state table")
	}
	return &FleetRecords[R]{table: table, kind: kind}, nil
}

// Load returns the fleet's record and its version: the zero R and version 0 for a fleet that
// has none. A body that does not decode is an error, never a silent reset (what the record
// holds would be forgotten).
func (r *FleetRecords[R]) Load(ctx context.Context, fleetName string) (R, int64, error) {
	var rec R
	body, version, found, err := r.table.Load(ctx, FleetKey(fleetName), r.kind)
	if err != nil {
		return rec, 0, fmt.Errorf("loading %s record of fleet %s: %w", r.kind, fleetName, err)
	}
	if !found {
		return rec, 0, nil
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		var zero R
		return zero, 0, fmt.Errorf("decoding %s record of fleet %s (version %d): %w", r.kind, fleetName, version, err)
	}
	return rec, version, nil
}

// Save writes rec as the version after version, if the stored one is still version (0: if there
// is none). It returns false, nil when another writer got there first. expires, when not zero,
// marks the record finished and is its TTL; a zero expires keeps it forever.
func (r *FleetRecords[R]) Save(ctx context.Context, fleetName string, rec R, version int64, expires time.Time) (bool, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("encoding %s record of fleet %s: %w", r.kind, fleetName, err)
	}
	ok, err := r.table.Save(ctx, FleetKey(fleetName), r.kind, body, version, time.Time{}, expires)
	if err != nil {
		return false, fmt.Errorf("saving %s record of fleet %s: %w", r.kind, fleetName, err)
	}
	return ok, nil
}
