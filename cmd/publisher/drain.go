package main

import (
	"context"
	"errors"
	"fmt"
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
		Use:   "drain --fleet NAME --instance i-… [--replace] [--dry-run]",
		Short: "Retire one instance through its terminate lifecycle hook, jobs finished first",
		Long: `drain retires one instance of the fleet: the worker terminates it through the fleet's Auto Scaling
group (TerminateInstanceInAutoScalingGroup), so the group's terminate hook drains it like any
other termination — intake stopped, running jobs finished, runner unregistered — before it goes.
The group's desired capacity drops by one, unless --replace keeps it (the group then launches a
replacement at once).

Before sending, drain checks with DescribeAutoScalingInstances that the instance is in the fleet's
group and refuses any other instance (the worker checks again when the command arrives). With
--dry-run the check is skipped and the message is printed. It prints the command's id.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDrain(cmd.Context(), cmd, o)
		},
	}
	o.send.addFlags(cmd, true)
	cmd.Flags().StringVar(&o.instance, "instance", "", "the EC2 instance to retire (i-…) (required)")
	cmd.Flags().BoolVar(&o.replace, "replace", false, "keep the group's desired capacity: a replacement is launched")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

func runDrain(ctx context.Context, cmd *cobra.Command, o *drainOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	c := messages.NewCommand(o.send.fleet, messages.CommandDrain, time.Now())
	c.Issuer = o.send.issuer
	c.Drain.InstanceID, c.Drain.Replace = o.instance, o.replace
	if err := c.Validate(); err != nil {
		return fmt.Errorf("building the drain command: %w", err)
	}
	if !o.send.dryRun {
		if err := checkMember(ctx, &o.send, o.instance); err != nil {
			return err
		}
	}
	return send(ctx, cmd.OutOrStdout(), &o.send, c)
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
