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
	"fmt"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
)

// SortKey is the sort key of a fleet's scale record.
const SortKey = "scale"

// PartitionKey returns the partition key of a fleet's records (state.FleetKey).
func PartitionKey(fleetName string) string { return state.FleetKey(fleetName) }

// Table is the part of infra/aws/state.Table the store uses.
type Table = state.Versioned

// Store implements scale.StateStore over the state table. It is safe for concurrent use.
type Store struct {
	records *state.FleetRecords[scale.Record]
}

var _ scale.StateStore = (*Store)(nil)

// New returns a Store; it refuses a nil table.
func New(table Table) (*Store, error) {
	records, err := state.NewFleetRecords[scale.Record](table, SortKey)
	if err != nil {
		return nil, fmt.Errorf("scalestate: %w", err)
	}
	return &Store{records: records}, nil
}

// Load returns the fleet's record and version; the zero Record and version 0 for a fleet never
// stored. A body that does not decode is an error (never silently reset: the pin would be lost).
func (s *Store) Load(ctx context.Context, fleetName string) (scale.Record, int64, error) {
	return s.records.Load(ctx, fleetName)
}

// Save writes rec as the version after version, if the stored one is still version. It returns
// false, nil when another writer got there first. A scale record never expires.
func (s *Store) Save(ctx context.Context, fleetName string, rec scale.Record, version int64) (bool, error) {
	return s.records.Save(ctx, fleetName, rec, version, time.Time{})
}
