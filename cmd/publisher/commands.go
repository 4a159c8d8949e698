package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/spf13/cobra"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// sendOptions are the flags every fleet command takes.
type sendOptions struct {
	fleet    string
	dryRun   bool
	config   string
	queue    string
	region   string
	endpoint string
	issuer   string
}

func (o *sendOptions) addFlags(cmd *cobra.Command, fleetRequired bool) {
	o.addReadFlags(cmd, fleetRequired)
	f := cmd.Flags()
	f.BoolVar(&o.dryRun, "dry-run", false, "print the message instead of publishing it")
	f.StringVar(&o.queue, "queue", "", "control queue name or URL (default: queues.control.name of the config)")
	f.StringVar(&o.issuer, "issuer", os.Getenv("USER"), "who sends the command (recorded in it; a claim: the worker audits the SQS sender)")
}

// addReadFlags registers the flags of a command that only reads (status): the fleet, the config
// and where AWS is.
func (o *sendOptions) addReadFlags(cmd *cobra.Command, fleetRequired bool) {
	f := cmd.Flags()
	f.StringVar(&o.fleet, "fleet", "", "the fleet (a name from the worker's config) (required)")
	f.StringVar(&o.config, "config", "", "the worker's YAML config (default $"+config.EnvFile+", else the SSM parameter named by $"+config.EnvParameter+")")
	f.StringVar(&o.region, "region", "", "AWS region (default: the config's, else $AWS_REGION)")
	f.StringVar(&o.endpoint, "endpoint", "", "AWS endpoint URL (default: the config's, else $AWS_ENDPOINT_URL)")
	if fleetRequired {
		_ = cmd.MarkFlagRequired("fleet")
	}
}

// fleetCommands are the commands sent to the worker. Those whose handler has not landed yet
// refuse with the issue that brings them.
func fleetCommands() []*cobra.Command {
	return []*cobra.Command{
		newTickCmd(),
		newScaleCmd(), // scale.go (issue 6)
		newDrainCmd(), // drain.go (issue 7)
		newCycleCmd(), // cycle.go (issue 10)
		newUpdateCmd(),
		newStatusCmd(), // status.go (issue 10)
	}
}

func newTickCmd() *cobra.Command {
	o := &sendOptions{}
	wo := &waitOptions{}
	cmd := &cobra.Command{
		Use:   "tick --fleet NAME [--wait] [--dry-run]",
		Short: "Ask for one tick of a fleet now, as its schedule rule would",
		Long: `tick sends a tick command for the fleet: the worker handles it as one firing of the fleet's
tick rule: it advances a cycle or update in progress, then decides on scaling (replacing marked
instances first). It prints the command's id.

--wait then waits until the worker has taken the command (its command ledger in the state table)
and prints the decision the tick recorded: the desired capacity, the action (scale_out, scale_in,
steady, or held while a cycle owns the capacity) and the reason. Exit status 0 once decided, 1
when the worker refused the command (with its reason), 3 when --timeout passed first or the
outcome could not be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := messages.NewCommand(o.fleet, messages.CommandTick, time.Now())
			c.Issuer = o.issuer
			return sendAndWait(cmd.Context(), cmd.OutOrStdout(), o, wo, c, fmt.Sprintf("tick %s of fleet %s", c.ID, o.fleet), false)
		},
	}
	o.addFlags(cmd, true)
	wo.addFlags(cmd, "wait until the worker has taken the tick, and print its decision")
	return cmd
}

// send validates c, then prints it (--dry-run) or publishes it to the control queue and prints
// its id.
func send(ctx context.Context, stdout io.Writer, o *sendOptions, c messages.Command) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := loadConfig(ctx, o)
	if err != nil {
		return err
	}
	queue := o.queue
	if cfg != nil {
		if _, ok := cfg.Fleet(o.fleet); !ok {
			return fmt.Errorf("fleet %q is not in the worker's configuration", o.fleet)
		}
		if queue == "" {
			queue = cfg.Queues.Control.Name
		}
	}
	if queue == "" {
		return errors.New("no control queue: pass --queue or --config")
	}
	body, err := c.Marshal()
	if err != nil {
		return fmt.Errorf("building the %s command: %w", c.Type, err)
	}
	if o.dryRun {
		var pretty map[string]any
		_ = json.Unmarshal(body, &pretty)
		out, _ := json.MarshalIndent(map[string]any{
			"queue": queue, "message_group_id": c.Fleet, "message_deduplication_id": c.ID, "body": pretty,
		}, "", "  ")
		fmt.Fprintln(stdout, string(out))
		return nil
	}
	pub, err := newPublisher(ctx, o, cfg)
	if err != nil {
		return err
	}
	defer pub.Close()
	msg := message.NewMessage(c.ID, body)
	msg.Metadata.Set(sqs.MetaGroupID, c.Fleet)
	msg.Metadata.Set(sqs.MetaDedupID, c.ID)
	if err := pub.Publish(queue, msg); err != nil {
		return fmt.Errorf("publishing the %s command to %s: %w", c.Type, queue, err)
	}
	fmt.Fprintln(stdout, c.ID)
	return nil
}

// loadConfig reads the worker's config when one is named (flag, env); nil when none is and
// --queue is given.
func loadConfig(ctx context.Context, o *sendOptions) (*config.Config, error) {
	src := config.Source{File: o.config}
	if src.Location() == "" {
		if o.queue != "" {
			return nil, nil
		}
		return nil, fmt.Errorf("no configuration: pass --config FILE or --queue, or set %s or %s", config.EnvFile, config.EnvParameter)
	}
	if src.NeedsSSM() {
		b := src.Bootstrap()
		opts := rfaws.ConfigOptions{Region: firstOf(o.region, b.Region), BaseEndpoint: firstOf(o.endpoint, b.Endpoint), LoopbackOnly: b.LoopbackOnly}
		awsCfg, err := rfaws.LoadConfig(ctx, opts)
		if err != nil {
			return nil, err
		}
		src.SSM = ssm.NewFromConfig(awsCfg)
	}
	return config.Load(ctx, src)
}

func newPublisher(ctx context.Context, o *sendOptions, cfg *config.Config) (*sqs.Publisher, error) {
	opts := rfaws.ConfigOptions{Region: o.region, BaseEndpoint: o.endpoint}
	if cfg != nil {
		opts.LoopbackOnly = cfg.LoopbackOnly
		if opts.Region == "" {
			opts.Region = cfg.Region
		}
		if opts.BaseEndpoint == "" {
			opts.BaseEndpoint = cfg.Endpoint
		}
	}
	awsCfg, err := rfaws.LoadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pub, err := sqs.NewPublisher(sqs.PublisherConfig{}, awssqs.NewFromConfig(awsCfg), logger)
	if err != nil {
		return nil, fmt.Errorf("creating the publisher: %w", err)
	}
	return pub, nil
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
