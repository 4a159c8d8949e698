package drain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sweep looks at every unfinished drain in the table: it sets the in-progress and oldest-age
// gauges, and advances each drain whose next step is overdue by more than SweepGrace — its
// follow-up was lost, or the worker taking its step died. The worker calls it on an interval
// (a fraction of the smallest poll interval is plenty); any replica may, at any time: a drain
// advanced here is leased like any other step. It returns how many drains it advanced.
func (h *Handler) Sweep(ctx context.Context) (int, error) {
	bodies, err := h.d.Store.Unfinished(ctx, keyPrefix)
	if err != nil {
		return 0, fmt.Errorf("drain: sweeping unfinished drains: %w", err)
	}
	now := h.d.Clock.Now()
	count := map[string]int{}
	oldest := map[string]time.Duration{}
	left := map[string]time.Duration{}
	for _, f := range h.cfg.Fleets {
		count[f.Name], oldest[f.Name] = 0, 0
	}
	var overdue []string
	var errs []error
	for _, b := range bodies {
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			errs = append(errs, fmt.Errorf("drain: sweeping: unreadable drain record: %w", err))
			continue
		}
		if rec.Phase == phaseDone {
			continue
		}
		count[rec.Fleet]++
		oldest[rec.Fleet] = max(oldest[rec.Fleet], now.Sub(rec.StartedAt))
		if l, seen := left[rec.Fleet]; !seen || rec.Deadline.Sub(now) < l {
			left[rec.Fleet] = max(rec.Deadline.Sub(now), 0)
		}
		// A newer worker's record is left to newer replicas (Handler.passOn).
		if rec.Schema <= recordSchema && rec.Due.Add(h.cfg.SweepGrace).Before(now) {
			overdue = append(overdue, rec.Token)
		}
	}
	for f, n := range count {
		h.m.InProgress.WithLabelValues(f).Set(float64(n))
		h.m.OldestAge.WithLabelValues(f).Set(oldest[f].Seconds())
		h.m.LeastTimeLeft.WithLabelValues(f).Set(left[f].Seconds())
	}
	h.publish(ctx, now, count, oldest, left)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, h.cfg.SweepConcurrency)
	for _, token := range overdue {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := h.advance(ctx, token, 0, true); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(overdue) > 0 {
		h.log.Info("drain sweep", "unfinished", len(bodies), "overdue", len(overdue))
	}
	return len(overdue), errors.Join(errs...)
}

// publish hands every fleet's figures to the Sink, if any; what a failed publish carried is
// kept for the next one.
func (h *Handler) publish(ctx context.Context, now time.Time, count map[string]int, oldest, left map[string]time.Duration) {
	if h.d.Sink == nil {
		return
	}
	for fleet, n := range count {
		h.mu.Lock()
		t := h.unpublished[fleet]
		delete(h.unpublished, fleet)
		h.mu.Unlock()
		fig := Figures{Fleet: fleet, At: now, InProgress: n, OldestAge: oldest[fleet], LeastTimeLeft: left[fleet], Finished: map[string]int{}}
		if t != nil {
			fig.Finished, fig.Heartbeats = t.finished, t.heartbeats
		}
		if err := h.d.Sink.PublishDrains(ctx, fig); err != nil {
			h.log.Warn("drain: publishing figures", "fleet", fleet, "error", err)
			for outcome, k := range fig.Finished {
				for range k {
					h.count(fleet, outcome, 0)
				}
			}
			h.count(fleet, "", fig.Heartbeats)
		}
	}
}
