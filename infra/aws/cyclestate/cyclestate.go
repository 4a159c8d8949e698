// Package cyclestate holds the cycle handler's adapters: its record in the DynamoDB state table
// (Store), its view of the fleet's Auto Scaling group (Group), and its runner health check over
// infra/scrape (Health).
//
// Key design: one item per fleet, pk = "fleet#<name>" (the partition of the fleet's records, as
// infra/aws/scalestate), sk = "cycle". The body is the handlers/cycle Record as JSON; the version
// attribute is the optimistic lock every step's claim is conditioned on. A finished cycle's item
// carries expires_at (the table's TTL) DefaultKeepFinished later, so publisher status shows the
// last cycle for a week; an unfinished one never expires.
package cyclestate

import (
	"context"
	"fmt"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
)

// SortKey is the sort key of a fleet's cycle record.
const SortKey = "cycle"

// PartitionKey returns the partition key of a fleet's records (state.FleetKey).
func PartitionKey(fleetName string) string { return state.FleetKey(fleetName) }

// Table is the part of infra/aws/state.Table the store uses.
type Table = state.Versioned

// Store implements cycle.StateStore over the state table. It is safe for concurrent use.
type Store struct {
	records *state.FleetRecords[cycle.Record]
	keep    time.Duration
}

var _ cycle.StateStore = (*Store)(nil)

// New returns a Store; it refuses a nil table.
func New(table Table) (*Store, error) {
	records, err := state.NewFleetRecords[cycle.Record](table, SortKey)
	if err != nil {
		return nil, fmt.Errorf("cyclestate: %w", err)
	}
	return &Store{records: records, keep: cycle.DefaultKeepFinished}, nil
}

// Load returns the fleet's cycle record and version; the zero Record and version 0 for a fleet
// never cycled. A body that does not decode is an error (never silently reset: a cycle in
// progress would be forgotten).
func (s *Store) Load(ctx context.Context, fleetName string) (cycle.Record, int64, error) {
	return s.records.Load(ctx, fleetName)
}

// Save writes rec as the version after version, if the stored one is still version. It returns
// false, nil when another writer got there first. A finished record gets its TTL.
func (s *Store) Save(ctx context.Context, fleetName string, rec cycle.Record, version int64) (bool, error) {
	var expires time.Time
	if rec.Status.Final() && rec.TokenChangedAt.IsZero() {
		expires = rec.FinishedAt.Add(s.keep)
	}
	return s.records.Save(ctx, fleetName, rec, version, expires)
}
