// Package scalestate keeps the scale handler's per-fleet Record in the DynamoDB state table
// (the table drains use too), so the stabilization window, idle-since marks and pins survive a
// worker restart and are shared by every replica.
//
// Key design: one item per fleet, pk = "fleet#<name>", sk = "scale". Other fleet-level records
// (cycles, updates) live under the same pk with their own sk, so a fleet's records are one Query
// away and never collide with drains (pk "drain#<token>"). The item's body is the Record as JSON;
// its numeric version attribute is the optimistic lock: every Save is a PutItem conditioned on
// the version read (or on the item's absence for version 0), which is what makes "one decision
// per tick" hold across replicas. A scale record is never finished, so it has no TTL.
package scalestate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
)

// SortKey is the sort key of a fleet's scale record.
const SortKey = "scale"

// PartitionKey returns the partition key of a fleet's records.
func PartitionKey(fleetName string) string { return "fleet#" + fleetName }

// Table is the part of infra/aws/state.Table the store uses.
type Table interface {
	Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error)
	Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error)
}

// Store implements scale.StateStore over the state table. It is safe for concurrent use.
type Store struct {
	table Table
}

var _ scale.StateStore = (*Store)(nil)

// New returns a Store; it refuses a nil table.
func New(table Table) (*Store, error) {
	if table == nil {
		return nil, errors.New("scalestate: nil state table")
	}
	return &Store{table: table}, nil
}

// Load returns the fleet's record and version; the zero Record and version 0 for a fleet never
// stored. A body that does not decode is an error (never silently reset: the pin would be lost).
func (s *Store) Load(ctx context.Context, fleetName string) (scale.Record, int64, error) {
	body, version, found, err := s.table.Load(ctx, PartitionKey(fleetName), SortKey)
	if err != nil {
		return scale.Record{}, 0, fmt.Errorf("loading scale record of fleet %s: %w", fleetName, err)
	}
	if !found {
		return scale.Record{}, 0, nil
	}
	var rec scale.Record
	if err := json.Unmarshal(body, &rec); err != nil {
		return scale.Record{}, 0, fmt.Errorf("decoding scale record of fleet %s (version %d): %w", fleetName, version, err)
	}
	return rec, version, nil
}

// Save writes rec as the version after version, if the stored one is still version. It returns
// false, nil when another writer got there first.
func (s *Store) Save(ctx context.Context, fleetName string, rec scale.Record, version int64) (bool, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("encoding scale record of fleet %s: %w", fleetName, err)
	}
	ok, err := s.table.Save(ctx, PartitionKey(fleetName), SortKey, body, version, time.Time{}, time.Time{})
	if err != nil {
		return false, fmt.Errorf("saving scale record of fleet %s: %w", fleetName, err)
	}
	return ok, nil
}
