package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/router"
)

// exitUnknown is the exit status when publisher gave up waiting and does not know the outcome
// (the operation may still be running, or the worker never took the command); 1 means it failed
// or was refused.
const exitUnknown = 3

// unknownOutcome marks an error after which the outcome is not known (exit status exitUnknown).
type unknownOutcome struct{ err error }

func (u unknownOutcome) Error() string { return u.err.Error() }
func (u unknownOutcome) Unwrap() error { return u.err }

// exitStatus is the process's exit status for err.
func exitStatus(err error) int {
	if errors.As(err, new(unknownOutcome)) {
		return exitUnknown
	}
	return 1
}

// takeMargin is how long past the worker's command age limit --wait still waits for it to take a
// command: after that the worker refuses it as stale anyway.
const takeMargin = time.Minute

// takeCheck tells a command the worker refused, or never took, from one still on its way, while
// --wait waits for it to show up in the operation's record.
type takeCheck struct {
	// fate reads the command's entry in the worker's command ledger (seen false while it has
	// none): when the worker took it, and why it refused it.
	fate func(ctx context.Context) (entry router.LedgerEntry, seen bool, err error)
	// deadline is when a command not yet taken is given up on.
	deadline time.Time
	// what names the operation in messages ("cycle c1 of fleet blue").
	what string
	now  func() time.Time
}

// newTakeCheck checks command id against the worker's command ledger in table; the worker refuses
// commands older than its command_max_age (cfg's, or the default).
func newTakeCheck(table *state.Table, cfg *config.Config, id, what string, issued time.Time) takeCheck {
	maxAge := config.DefaultCommandMaxAge
	if cfg != nil && cfg.CommandMaxAge > 0 {
		maxAge = cfg.CommandMaxAge
	}
	return takeCheck{
		fate: func(ctx context.Context) (router.LedgerEntry, bool, error) {
			pk, sk := router.CommandKey(id)
			body, _, found, err := table.Load(ctx, pk, sk)
			if err != nil || !found {
				return router.LedgerEntry{}, false, err
			}
			e, err := router.DecodeLedgerEntry(body)
			return e, true, err
		},
		deadline: issued.Add(maxAge + takeMargin),
		what:     what,
		now:      time.Now,
	}
}

// ledgerLook is one read of the command ledger.
type ledgerLook struct {
	// entry is the command's ledger entry when seen.
	entry router.LedgerEntry
	seen  bool
	// readErr is a failed read: it says nothing of the outcome, and the wait looks again.
	readErr error
}

// look reads the ledger once. Its error ends the wait: the worker refused the command (with its
// reason), or has not taken it by the deadline (unknownOutcome).
func (k takeCheck) look(ctx context.Context) (ledgerLook, error) {
	if k.fate == nil {
		return ledgerLook{}, nil
	}
	e, seen, err := k.fate(ctx)
	switch {
	case err != nil:
		return ledgerLook{readErr: err}, nil
	case e.Refused != "":
		return ledgerLook{entry: e, seen: seen}, fmt.Errorf("the worker refused %s: %s", k.what, e.Refused)
	case !seen && k.now().After(k.deadline):
		return ledgerLook{}, unknownOutcome{fmt.Errorf("the worker has not taken %s by %s, when it would refuse it as stale: "+
			"is a worker running, and can it read the control queue? (its log; the control queue's DLQ)",
			k.what, k.deadline.UTC().Format(time.RFC3339))}
	}
	return ledgerLook{entry: e, seen: seen}, nil
}

// check returns an error when the worker refused the command (with its reason) or has not taken
// it by the deadline; nil while it may still come. A failed read of the ledger waits on.
func (k takeCheck) check(ctx context.Context) error {
	_, err := k.look(ctx)
	return err
}

// readErrors notes the failed reads of a --wait loop, which looks again until its timeout: a read
// that fails (expired credentials, throttling, a network blip) says nothing of the outcome.
type readErrors struct{ last error }

// note prints the error when it differs from the last one noted (not once per look).
func (r *readErrors) note(w io.Writer, what string, err error) {
	if r.last == nil || r.last.Error() != err.Error() {
		fmt.Fprintf(w, "%s  %s failed (looking again until --timeout): %v\n", time.Now().UTC().Format("15:04:05"), what, err)
	}
	r.last = err
}

// wrap adds the last failed read to the error that ends the wait.
func (r *readErrors) wrap(err error) error {
	if r.last == nil {
		return err
	}
	return fmt.Errorf("%w (last failed read: %v)", err, r.last)
}
