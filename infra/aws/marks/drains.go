package marks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
)

// Keys and values of handlers/drain's records that Drains reads and writes. handlers/drain owns
// the format (see its package doc); Drains changes only the fields below and keeps every other
// field as it found it.
const (
	drainPrefix   = "drain#"
	drainSortKey  = "drain"
	drainDone     = "done"
	drainComplete = "complete"
	// OutcomeLost is the outcome of a drain whose instance stopped or terminated under it.
	OutcomeLost = "lost"
)

// Drains implements interrupt.Drains over handlers/drain's records in the state table. It is
// safe for concurrent use; its writes are conditioned on the version read, like the drain's own.
type Drains struct {
	t   Table
	now func() time.Time
}

var _ interrupt.Drains = (*Drains)(nil)

// NewDrains returns Drains; it refuses a nil table.
func NewDrains(t Table) (*Drains, error) {
	if t == nil {
		return nil, errors.New("marks: nil state table")
	}
	return &Drains{t: t, now: time.Now}, nil
}

type drainHead struct {
	Token      string `json:"token"`
	Fleet      string `json:"fleet"`
	InstanceID string `json:"instance_id"`
	Phase      string `json:"phase"`
}

// FinishLost finishes the instance's drain in progress with outcome "lost". A drain whose step
// holds its lease returns interrupt.ErrDrainBusy (the state change is retried after the step); a
// drain about to complete (its jobs were seen at zero) is not lost and is left alone.
func (d *Drains) FinishLost(ctx context.Context, id, state string, jobs int) (bool, string, int, error) {
	bodies, err := d.t.Unfinished(ctx, drainPrefix)
	if err != nil {
		return false, "", 0, fmt.Errorf("listing drains in progress: %w", err)
	}
	for _, b := range bodies {
		var h drainHead
		if json.Unmarshal(b, &h) != nil || h.InstanceID != id || h.Phase == drainDone || h.Token == "" {
			continue
		}
		for range updateRetries {
			done, lost, err := d.finish(ctx, h.Token, id, state, jobs)
			if err != nil || done {
				return done, h.Fleet, lost, err
			}
			if lost == -2 { // finished meanwhile, or about to complete
				return false, "", 0, nil
			}
		}
		return false, "", 0, fmt.Errorf("finishing the drain of %s as lost: lost %d conditional writes in a row", id, updateRetries)
	}
	return false, "", 0, nil
}

// finish tries once: done reports a write; lost -2 means nothing to do.
func (d *Drains) finish(ctx context.Context, token, id, state string, jobs int) (bool, int, error) {
	pk := drainPrefix + token
	body, version, found, err := d.t.Load(ctx, pk, drainSortKey)
	if err != nil {
		return false, 0, fmt.Errorf("reading the drain of %s: %w", id, err)
	}
	if !found {
		return false, -2, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var rec map[string]any
	if err := dec.Decode(&rec); err != nil {
		return false, 0, fmt.Errorf("reading the drain of %s: %w", id, err)
	}
	now := d.now()
	switch rec["phase"] {
	case drainDone, drainComplete:
		return false, -2, nil
	}
	if l, ok := rec["lease"].(map[string]any); ok {
		if until, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["until"])); err == nil && until.After(now) {
			return false, 0, fmt.Errorf("drain of %s: %w", id, interrupt.ErrDrainBusy)
		}
	}
	n := jobs
	if n < 0 {
		if v, err := strconv.Atoi(fmt.Sprint(rec["jobs"])); err == nil {
			n = v
		}
	}
	rec["phase"], rec["outcome"], rec["finished_at"], rec["jobs"] = drainDone, OutcomeLost, now, n
	rec["note"] = fmt.Sprintf("the instance went %s with %s running: lost", state, jobsText(n))
	rec["due"] = time.Time{}
	delete(rec, "lease")
	delete(rec, "command")
	out, err := json.Marshal(rec)
	if err != nil {
		return false, 0, fmt.Errorf("encoding the drain of %s: %w", id, err)
	}
	ok, err := d.t.Save(ctx, pk, drainSortKey, out, version, time.Time{}, now.Add(Retention))
	if err != nil {
		return false, 0, fmt.Errorf("finishing the drain of %s as lost: %w", id, err)
	}
	return ok, n, nil
}

func jobsText(n int) string {
	if n < 0 {
		return "an unknown number of jobs"
	}
	return fmt.Sprintf("%d job(s)", n)
}
