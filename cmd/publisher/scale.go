package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerfleet/runnerfleet/messages"
)

type scaleOptions struct {
	send    sendOptions
	wait    waitOptions
	desired int
	pinFor  time.Duration
	resume  bool
}

func newScaleCmd() *cobra.Command {
	o := &scaleOptions{}
	cmd := &cobra.Command{
		Use:   "scale --fleet NAME --desired N [--for DURATION] [--wait] [--dry-run] | scale --fleet NAME --resume [--wait]",
		Short: "Pin a fleet's desired capacity for a while, or resume policy-driven scaling",
		Long: `scale pins the fleet's desired capacity at --desired N: the worker's ticks replace the scaling
policy's target by N (kept within the Auto Scaling group's own min and max) and raise at once or
remove idle instances, with no stabilization window, until --for has passed (if given) or until
scale --resume unpins the fleet and the policy decides again.

Pinning never kills a job: below the number of busy instances, the busy ones stay (scale-in
protected) and go as they become idle; only idle instances are removed. A pinned fleet's ticks
still scrape its runners and report their metrics and decision, with the pin as the reason.

It prints the command's id (with --dry-run, the message instead of publishing it).

--wait (with the worker's config, which names the fleet's group) then waits until the worker has
taken the command (its command ledger in the state table), prints the decision it took at once
(the desired capacity it applied, the action, the reason), and waits until the Auto Scaling
group's desired capacity is that number, printing the group's desired and in-service counts.
When the capacity applied is not the pin, it says why: the group's MinSize or MaxSize win, busy
instances stay until idle (later ticks remove them), or a cycle holds the capacity. Instances
launching are not waited for (publisher status shows them boot). Exit status 0 once the group is
there, 1 when the worker refused the command (with its reason), 3 when --timeout passed first or
the outcome could not be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runScale(cmd.Context(), cmd.OutOrStdout(), cmd, o)
		},
	}
	o.send.addFlags(cmd, true)
	o.wait.addFlags(cmd, "wait until the worker has taken the command and the group's desired capacity is what it applied")
	f := cmd.Flags()
	f.IntVar(&o.desired, "desired", 0, "the desired capacity to pin (instances, ≥ 0)")
	f.DurationVar(&o.pinFor, "for", 0, "how long the pin holds (e.g. 2h; default: until --resume)")
	f.BoolVar(&o.resume, "resume", false, "unpin: the scaling policy decides again")
	return cmd
}

// scaleCommand validates the flags and builds the scale command: exactly one of --desired and
// --resume; --desired ≥ 0; --for > 0 when given, and only with --desired.
func scaleCommand(o *scaleOptions, desiredSet, forSet bool, now time.Time) (messages.Command, error) {
	var problems []error
	switch {
	case desiredSet && o.resume:
		problems = append(problems, errors.New("--desired and --resume exclude each other"))
	case !desiredSet && !o.resume:
		problems = append(problems, errors.New("pass --desired N to pin the capacity, or --resume to unpin"))
	}
	if desiredSet && o.desired < 0 {
		problems = append(problems, fmt.Errorf("--desired %d is negative", o.desired))
	}
	if forSet {
		if o.resume {
			problems = append(problems, errors.New("--for goes with --desired, not with --resume"))
		} else if o.pinFor <= 0 {
			problems = append(problems, fmt.Errorf("--for %s must be positive (omit it to pin until --resume)", o.pinFor))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return messages.Command{}, err
	}
	c := messages.NewCommand(o.send.fleet, messages.CommandScale, now)
	c.Issuer = o.send.issuer
	if o.resume {
		c.Scale.Resume = true
	} else {
		n := o.desired
		c.Scale.Desired, c.Scale.For = &n, o.pinFor
	}
	if err := c.Validate(); err != nil {
		return messages.Command{}, fmt.Errorf("building the scale command: %w", err)
	}
	return c, nil
}

func runScale(ctx context.Context, stdout io.Writer, cmd *cobra.Command, o *scaleOptions) error {
	c, err := scaleCommand(o, cmd.Flags().Changed("desired"), cmd.Flags().Changed("for"), time.Now())
	if err != nil {
		return err
	}
	what := fmt.Sprintf("scale %s of fleet %s (resume)", c.ID, o.send.fleet)
	if !o.resume {
		what = fmt.Sprintf("scale %s of fleet %s (pin at %d", c.ID, o.send.fleet, o.desired)
		if o.pinFor > 0 {
			what += " for " + o.pinFor.String()
		}
		what += ")"
	}
	return sendAndWait(ctx, stdout, &o.send, &o.wait, c, what, true)
}
