package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/cyclestate"
	"github.com/runnerfleet/runnerfleet/messages"
)

// defaultCycleTimeout bounds cycle --wait: a cycle ends when its last drain does, and a drain of a
// long job may take up to AWS's 48-hour lifecycle limit.
const defaultCycleTimeout = 49 * time.Hour

type cycleOptions struct {
	send           sendOptions
	maxUnavailable int
	surge          int
	// pairSet: exactly one of --surge and --max-unavailable was given (refused: the other would be 0).
	pairSet  bool
	all      bool
	abort    bool
	follow   bool
	wait     bool
	table    string
	timeout  time.Duration
	interval time.Duration
}

func newCycleCmd() *cobra.Command {
	o := &cycleOptions{}
	cmd := &cobra.Command{
		Use:   "cycle --fleet NAME [--max-unavailable N] [--surge N] [--all] [--wait] | cycle --fleet NAME --abort | cycle --fleet NAME --follow",
		Short: "Start or abort a drain-aware rolling replacement of a fleet's instances",
		Long: `cycle replaces every instance of the fleet that is not on its group's current launch template
version (every instance with --all). The worker launches replacements first (--surge above the
desired capacity), waits until each replacement's runner takes jobs, then retires old instances
through the group so each is drained (its jobs finish) before it goes. The instances serving never
drop below desired − --max-unavailable. A replacement not healthy within the fleet's health
timeout (however often the group replaces it), or an old instance Auto Scaling does not
terminate within it, fails the cycle with the reason; the cycle then undoes its surge (its
replacements that never served are retired, each drained) and the reason says what it retires.
--abort undoes it the same way. Pass --surge and
--max-unavailable together (0 is a value: --surge 0 replaces in place), or neither for the
fleet's defaults.

--abort stops the cycle in progress after its step in flight (retired instances still drain).
--wait follows the cycle: counting lines (replaced k of n, draining, waiting for health) and a
one-line outcome; it exits non-zero when the cycle fails or is aborted (3: the outcome is unknown,
--timeout passed first). --follow follows the cycle already in progress the same way, sending
nothing (after a --wait that gave up, or one someone else started).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.pairSet = cmd.Flags().Changed("surge") != cmd.Flags().Changed("max-unavailable")
			return runCycle(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	o.send.addFlags(cmd, true)
	f := cmd.Flags()
	f.IntVar(&o.maxUnavailable, "max-unavailable", 0, "instances that may be out of service at once (with --surge; neither: the fleet's defaults)")
	f.IntVar(&o.surge, "surge", 0, "replacements launched above the desired capacity (with --max-unavailable; neither: the fleet's defaults)")
	f.BoolVar(&o.all, "all", false, "replace every instance, not only those off the current launch template version")
	f.BoolVar(&o.abort, "abort", false, "stop the cycle in progress after its step in flight")
	f.BoolVar(&o.follow, "follow", false, "follow the cycle in progress until it ends, sending nothing")
	f.BoolVar(&o.wait, "wait", false, "follow the cycle until it ends (non-zero exit on failure or abort)")
	f.StringVar(&o.table, "table", os.Getenv(envStateTable), "the worker's DynamoDB state table, read by --wait (default $"+envStateTable+", else state_table of the config)")
	f.DurationVar(&o.timeout, "timeout", defaultCycleTimeout, "how long --wait follows the cycle")
	f.DurationVar(&o.interval, "follow-interval", defaultFollowInterval, "how often --wait looks")
	_ = f.MarkHidden("follow-interval")
	return cmd
}

func runCycle(ctx context.Context, stdout io.Writer, o *cycleOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.abort && (o.all || o.maxUnavailable != 0 || o.surge != 0) {
		return errors.New("--abort takes no --all, --surge or --max-unavailable")
	}
	if o.follow && (o.abort || o.all || o.maxUnavailable != 0 || o.surge != 0 || o.send.dryRun) {
		return errors.New("--follow sends nothing: it takes no --abort, --all, --surge, --max-unavailable or --dry-run")
	}
	if o.follow {
		o.wait = true
	}
	if o.maxUnavailable < 0 || o.surge < 0 {
		return errors.New("--surge and --max-unavailable must not be negative")
	}
	if o.pairSet && !o.abort {
		// The worker takes the fleet's defaults only when both are 0: one flag alone would run
		// with 0 for the other, not with its default.
		return errors.New("pass --surge and --max-unavailable together (0 is a value), or neither for the fleet's defaults")
	}
	if o.wait && o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration", o.timeout)
	}
	c := messages.NewCommand(o.send.fleet, messages.CommandCycle, time.Now())
	c.Issuer = o.send.issuer
	*c.Cycle = messages.CycleArgs{MaxUnavailable: o.maxUnavailable, Surge: o.surge, All: o.all, Abort: o.abort}
	if !o.wait || o.send.dryRun {
		return send(ctx, stdout, &o.send, c)
	}
	cfg, err := loadConfig(ctx, &o.send)
	if err != nil {
		return err
	}
	table, _, err := openTable(ctx, &o.send, cfg, o.table, "--wait reads")
	if err != nil {
		return err
	}
	store, err := cyclestate.New(table)
	if err != nil {
		return err
	}
	load := func(ctx context.Context) (cycle.Record, error) {
		rec, _, err := store.Load(ctx, o.send.fleet)
		return rec, err
	}
	before, err := load(ctx)
	if err != nil {
		return err
	}
	want := c.ID
	switch {
	case o.follow && !before.Active():
		return fmt.Errorf("fleet %s has no cycle in progress (last: %s)", o.send.fleet, describeLast(before))
	case o.follow:
		fmt.Fprintf(stdout, "following cycle %s of fleet %s, started %s\n", before.ID, o.send.fleet, before.StartedAt.Format(time.RFC3339))
		fctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		return followCycle(fctx, stdout, load, takeCheck{}, o.send.fleet, before.ID, false, o.interval)
	case o.abort && !before.Active():
		return fmt.Errorf("fleet %s has no cycle in progress (last: %s)", o.send.fleet, describeLast(before))
	case o.abort:
		want = before.ID
	case before.Active():
		return fmt.Errorf("cycle %s of fleet %s is in progress since %s; abort it first (--abort) or follow it (--follow)", before.ID, o.send.fleet, before.StartedAt.Format(time.RFC3339))
	}
	if err := send(ctx, stdout, &o.send, c); err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	taken := newTakeCheck(table, cfg, c.ID, fmt.Sprintf("cycle %s of fleet %s", c.ID, o.send.fleet), c.IssuedAt)
	if o.abort {
		taken.what = fmt.Sprintf("the abort (command %s) of cycle %s of fleet %s", c.ID, want, o.send.fleet)
	}
	return followCycle(fctx, stdout, load, taken, o.send.fleet, want, o.abort, o.interval)
}

func describeLast(r cycle.Record) string {
	if r.ID == "" {
		return "none"
	}
	return fmt.Sprintf("%s %s", r.ID, r.Status)
}

// followCycle prints the cycle's progress lines (the record's events: launches, health,
// retirements, counts) as they appear until cycle id ends, then its one-line outcome. A failed or
// aborted cycle is an error, except when the abort is what was asked (aborting).
func followCycle(ctx context.Context, w io.Writer, load func(context.Context) (cycle.Record, error), taken takeCheck, fleet, id string, aborting bool, interval time.Duration) error {
	printed := map[cycle.Event]bool{}
	waiting, seen := false, false
	var reads readErrors
	for {
		rec, err := load(ctx)
		switch {
		case err != nil:
			// The cycle runs on whatever this process can read: look again until the timeout.
			reads.note(w, fmt.Sprintf("reading the cycle record of fleet %s", fleet), err)
		case rec.ID == id:
			seen = true
			for _, ev := range rec.Events {
				if !printed[ev] {
					fmt.Fprintf(w, "%s  %s\n", ev.At.UTC().Format("15:04:05"), ev.Text)
					printed[ev] = true
				}
			}
			if rec.Status.Final() {
				fmt.Fprintln(w, cycleOutcome(fleet, rec))
				switch {
				case rec.Status == cycle.StatusSucceeded, rec.Status == cycle.StatusAborted && aborting:
					return nil
				}
				return fmt.Errorf("cycle %s of fleet %s %s", rec.ID, fleet, rec.Status)
			}
		case seen:
			// Another cycle took the fleet's record (a token change, another operator) before
			// this one was seen to end.
			return unknownOutcome{fmt.Errorf("cycle %s of fleet %s: the fleet's record now holds cycle %s (%s) and this one was not seen to end: see publisher status",
				id, fleet, rec.ID, rec.Status)}
		case !waiting:
			fmt.Fprintf(w, "%s  waiting for the worker to take cycle %s\n", time.Now().UTC().Format("15:04:05"), id)
			waiting = true
		}
		// Until the cycle is ours (or, for an abort, while the cycle runs on): did the worker
		// refuse the command, or never take it?
		if rec.ID != id || aborting {
			if err := taken.check(ctx); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return unknownOutcome{reads.wrap(fmt.Errorf("following cycle %s of fleet %s: gave up waiting: %w", id, fleet, ctx.Err()))}
		case <-time.After(interval):
		}
	}
}

func progressText(p cycle.Progress) string {
	text := fmt.Sprintf("replaced %d of %d, draining %d, waiting for health %d, serving %d (floor %d)",
		p.Replaced, p.Total, p.Draining, p.WaitingForHealth, p.Serving, p.Floor)
	if p.Unlooked > 0 {
		text += fmt.Sprintf(", the worker could not look at %d", p.Unlooked)
	}
	return text
}

// cycleOutcome is the one-line outcome of a cycle.
func cycleOutcome(fleet string, r cycle.Record) string {
	took := r.FinishedAt.Sub(r.StartedAt).Round(time.Second)
	return fmt.Sprintf("cycle %s of fleet %s %s after %s (%d of %d replaced): %s", r.ID, fleet, r.Status, took, r.Progress.Replaced, r.Progress.Total, r.Reason)
}
