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
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
)

// SortKey is the sort key of a fleet's cycle record.
const SortKey = "cycle"

// PartitionKey returns the partition key of a fleet's records.
func PartitionKey(fleetName string) string { return "fleet#" + fleetName }

// Table is the part of infra/aws/state.Table the store uses.
type Table interface {
	Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error)
	Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error)
}

// Store implements cycle.StateStore over the state table. It is safe for concurrent use.
type Store struct {
	table Table
	keep  time.Duration
}

var _ cycle.StateStore = (*Store)(nil)

// New returns a Store; it refuses a nil table.
func New(table Table) (*Store, error) {
	if table == nil {
		return nil, errors.New("cyclestate: nil state table")
	}
	return &Store{table: table, keep: cycle.DefaultKeepFinished}, nil
}

// Load returns the fleet's cycle record and version; the zero Record and version 0 for a fleet
// never cycled. A body that does not decode is an error (never silently reset: a cycle in
// progress would be forgotten).
func (s *Store) Load(ctx context.Context, fleetName string) (cycle.Record, int64, error) {
	body, version, found, err := s.table.Load(ctx, PartitionKey(fleetName), SortKey)
	if err != nil {
		return cycle.Record{}, 0, fmt.Errorf("loading cycle record of fleet %s: %w", fleetName, err)
	}
	if !found {
		return cycle.Record{}, 0, nil
	}
	var rec cycle.Record
	if err := json.Unmarshal(body, &rec); err != nil {
		return cycle.Record{}, 0, fmt.Errorf("decoding cycle record of fleet %s (version %d): %w", fleetName, version, err)
	}
	return rec, version, nil
}

// Save writes rec as the version after version, if the stored one is still version. It returns
// false, nil when another writer got there first. A finished record gets its TTL.
func (s *Store) Save(ctx context.Context, fleetName string, rec cycle.Record, version int64) (bool, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("encoding cycle record of fleet %s: %w", fleetName, err)
	}
	var expires time.Time
	if rec.Status.Final() && rec.TokenChangedAt.IsZero() {
		expires = rec.FinishedAt.Add(s.keep)
	}
	ok, err := s.table.Save(ctx, PartitionKey(fleetName), SortKey, body, version, time.Time{}, expires)
	if err != nil {
		return false, fmt.Errorf("saving cycle record of fleet %s: %w", fleetName, err)
	}
	return ok, nil
}
