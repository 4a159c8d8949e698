package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/spf13/cobra"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/aws/marks"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/messages"
)

// drainCheckTimeout bounds the membership check (one DescribeAutoScalingInstances call).
const drainCheckTimeout = 30 * time.Second

type drainOptions struct {
	send     sendOptions
	instance string
	replace  bool
	wait     bool
	table    string
	timeout  time.Duration
	interval time.Duration
}

// groupFinder answers which group an instance is in (marks.Groups).
type groupFinder interface {
	GroupOf(ctx context.Context, instanceID string) (group, state string, found bool, err error)
}

// newGroupFinder builds the Auto Scaling client the membership check uses; tests replace it.
var newGroupFinder = func(ctx context.Context, o *sendOptions, cfg *config.Config) (groupFinder, error) {
	opts := rfaws.ConfigOptions{Region: firstOf(o.region, cfg.Region), BaseEndpoint: firstOf(o.endpoint, cfg.Endpoint), LoopbackOnly: cfg.LoopbackOnly}
	awsCfg, err := rfaws.LoadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	return marks.NewGroups(autoscaling.NewFromConfig(awsCfg))
}

func newDrainCmd() *cobra.Command {
	o := &drainOptions{}
	cmd := &cobra.Command{
		Use:   "drain --fleet NAME --instance i-… [--replace] [--wait] [--dry-run]",
		Short: "Retire one instance through its terminate lifecycle hook, jobs finished first",
		Long: `drain retires one instance of the fleet: the worker terminates it through the fleet's Auto Scaling
group (TerminateInstanceInAutoScalingGroup), so the group's terminate hook drains it like any
other termination — intake stopped, running jobs finished, runner unregistered — before it goes.
The group's desired capacity drops by one, unless --replace keeps it (the group then launches a
replacement at once).

Before sending, drain checks with DescribeAutoScalingInstances that the instance is in the fleet's
group and refuses any other instance (the worker checks again when the command arrives). With
--dry-run the check is skipped and the message is printed. It prints the command's id.

--wait follows the instance until it has left the group: its lifecycle state and its drain's
phase and running jobs as they change. Exit status 0 once it is gone, 1 when the worker refused
the command (with its reason), 3 when --timeout passed first or the outcome could not be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDrain(cmd.Context(), cmd, o)
		},
	}
	o.send.addFlags(cmd, true)
	cmd.Flags().StringVar(&o.instance, "instance", "", "the EC2 instance to retire (i-…) (required)")
	cmd.Flags().BoolVar(&o.replace, "replace", false, "keep the group's desired capacity: a replacement is launched")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "follow the instance until it has left the group (drained and terminated)")
	cmd.Flags().StringVar(&o.table, "table", os.Getenv(envStateTable), "the worker's DynamoDB state table, read by --wait (default $"+envStateTable+", else state_table of the config)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", defaultCycleTimeout, "how long --wait follows the drain (a drain lasts as long as the instance's longest job, up to 48 h)")
	cmd.Flags().DurationVar(&o.interval, "follow-interval", defaultFollowInterval, "how often --wait looks")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

func runDrain(ctx context.Context, cmd *cobra.Command, o *drainOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.wait && o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration", o.timeout)
	}
	c := messages.NewCommand(o.send.fleet, messages.CommandDrain, time.Now())
	c.Issuer = o.send.issuer
	c.Drain.InstanceID, c.Drain.Replace = o.instance, o.replace
	if err := c.Validate(); err != nil {
		return fmt.Errorf("building the drain command: %w", err)
	}
	if o.send.dryRun {
		return send(ctx, cmd.OutOrStdout(), &o.send, c)
	}
	if err := checkMember(ctx, &o.send, o.instance); err != nil {
		return err
	}
	if !o.wait {
		return send(ctx, cmd.OutOrStdout(), &o.send, c)
	}
	observe, taken, err := drainWatch(ctx, o, c)
	if err != nil {
		return err
	}
	if err := send(ctx, cmd.OutOrStdout(), &o.send, c); err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return followDrain(fctx, cmd.OutOrStdout(), observe, taken, o.instance, o.interval)
}

// drainSight is what drain --wait sees of an instance at one look: its lifecycle state in its
// group (found false once no group lists it) and its drain in progress, if any.
type drainSight struct {
	state string
	found bool
	drain *drainView
}

// drainWatch builds what drain --wait reads: the instance's group membership and the fleet's
// drains in the state table, and the worker's command ledger.
func drainWatch(ctx context.Context, o *drainOptions, c messages.Command) (func(context.Context) (drainSight, error), takeCheck, error) {
	cfg, err := loadConfig(ctx, &o.send)
	if err != nil {
		return nil, takeCheck{}, err
	}
	table, _, err := openTable(ctx, &o.send, cfg, o.table, "--wait reads")
	if err != nil {
		return nil, takeCheck{}, err
	}
	groups, err := newGroupFinder(ctx, &o.send, cfg)
	if err != nil {
		return nil, takeCheck{}, err
	}
	observe := func(ctx context.Context) (drainSight, error) {
		_, st, found, err := groups.GroupOf(ctx, o.instance)
		if err != nil {
			return drainSight{}, err
		}
		sight := drainSight{state: st, found: found}
		bodies, err := table.Unfinished(ctx, "drain#")
		if err != nil {
			return drainSight{}, err
		}
		for _, b := range bodies {
			var d drainView
			if json.Unmarshal(b, &d) == nil && d.Fleet == o.send.fleet && d.InstanceID == o.instance {
				sight.drain = &d
			}
		}
		return sight, nil
	}
	taken := newTakeCheck(table, cfg, c.ID, fmt.Sprintf("drain %s of %s (fleet %s)", c.ID, o.instance, o.send.fleet), c.IssuedAt)
	return observe, taken, nil
}

// followDrain prints the instance's lifecycle state and its drain's phase and jobs as they change,
// until no group lists the instance (or it is past Terminating:Wait): nil. A command the worker
// refused is an error with its reason; a timeout, or reads failing until it, is unknownOutcome.
func followDrain(ctx context.Context, w io.Writer, observe func(context.Context) (drainSight, error), taken takeCheck, instance string, interval time.Duration) error {
	last := ""
	var reads readErrors
	for {
		sight, err := observe(ctx)
		switch {
		case err != nil:
			reads.note(w, "reading "+instance+"'s group and drain", err)
		case !sight.found || sight.state == "Terminating:Proceed" || sight.state == "Terminated":
			fmt.Fprintf(w, "%s  %s has left its group: drained and terminated\n", time.Now().UTC().Format("15:04:05"), instance)
			return nil
		default:
			line := sight.state
			if d := sight.drain; d != nil {
				line += fmt.Sprintf("; drain %s, %d job(s) running", d.Phase, d.Jobs)
				if d.Note != "" {
					line += " (" + d.Note + ")"
				}
			}
			if line != last {
				fmt.Fprintf(w, "%s  %s: %s\n", time.Now().UTC().Format("15:04:05"), instance, line)
				last = line
			}
			if !strings.HasPrefix(sight.state, "Terminating") {
				// Not yet terminated through the group: did the worker refuse the command (an
				// instance in Standby, say), or never take it?
				if err := taken.check(ctx); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return unknownOutcome{reads.wrap(fmt.Errorf("following the drain of %s: gave up waiting: %w", instance, ctx.Err()))}
		case <-time.After(interval):
		}
	}
}

// checkMember refuses an instance that is not in the fleet's group.
func checkMember(ctx context.Context, o *sendOptions, instanceID string) error {
	cfg, err := loadConfig(ctx, o)
	if err != nil {
		return err
	}
	if cfg == nil {
		return errors.New("drain needs the worker's configuration (--config) to know the fleet's Auto Scaling group")
	}
	f, ok := cfg.Fleet(o.fleet)
	if !ok {
		return fmt.Errorf("fleet %q is not in the worker's configuration", o.fleet)
	}
	groups, err := newGroupFinder(ctx, o, cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, drainCheckTimeout)
	defer cancel()
	group, _, found, err := groups.GroupOf(ctx, instanceID)
	if err != nil {
		return fmt.Errorf("checking that %s is in fleet %q: %w", instanceID, f.Name, err)
	}
	if err := interrupt.Refusal(f, instanceID, group, found); err != nil {
		return fmt.Errorf("refusing to drain: %w", err)
	}
	return nil
}
