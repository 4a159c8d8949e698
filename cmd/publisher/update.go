package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/spf13/cobra"

	runner "github.com/runnerfleet/runnerfleet/deploy/runner"
	"github.com/runnerfleet/runnerfleet/handlers/update"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/aws/stacks"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/properties"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Waiting limits of publisher update, with why.
const (
	// defaultPlanTimeout: a change set is created in seconds; the worker waits up to 30 s for
	// it in the command's step, then a tick (every minute) carries on.
	defaultPlanTimeout = 5 * time.Minute
	// defaultWaitTimeout: CloudFormation's own update of an Auto Scaling group and launch
	// template takes minutes; an hour means something is stuck.
	defaultWaitTimeout = time.Hour
	// defaultFollowInterval is how often --wait and --plan look at the record and the events.
	defaultFollowInterval = 2 * time.Second
	// envStateTable names the state table (the worker's RUNNERFLEET_STATE_TABLE).
	envStateTable = "RUNNERFLEET_STATE_TABLE"
)

type updateOptions struct {
	send       sendOptions
	properties string
	template   string
	stack      string
	table      string
	plan       bool
	wait       bool
	follow     bool
	timeout    time.Duration
	interval   time.Duration
}

func newUpdateCmd() *cobra.Command {
	o := &updateOptions{}
	cmd := &cobra.Command{
		Use:   "update --fleet NAME --properties FILE [--template FILE] [--plan] [--wait] | update --fleet NAME --follow",
		Short: "Apply a CloudFormation change set to a fleet's stack from a properties file",
		Long: `update reads a properties file (Key=Value lines, # comments, blank lines; read as data, never
executed) and checks it against the runner template's parameters (or --template's): unknown keys,
values of the wrong type or outside the allowed values, pattern, minimum or maximum, lines that are
not Key=Value, and — when the stack does not exist yet — required parameters missing. Every problem
is listed with its line number and nothing is sent. Keys of the AWS sample's
sample-runner.properties keep working where they make sense; the others say what replaced them.
The runner token is never a property: it lives in the SSM SecureString parameter named by
TokenParameterName.

The worker then creates a change set (parameters absent from the file keep their previous values),
executes it, and follows the stack to a final status. --plan prints the change set and changes
nothing. --wait shows the stack's events as they happen and ends with a one-line outcome; it exits
non-zero when the update fails (3: the outcome is unknown, --timeout passed first). --follow
follows the fleet's update in progress the same way, sending nothing (after a --wait that gave
up, or one someone else started). --dry-run checks the file and prints the command without asking
AWS anything (so it cannot tell a new stack's missing required parameters).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUpdate(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	o.send.addFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&o.properties, "properties", "", "the fleet's properties file (required)")
	f.StringVar(&o.template, "template", "", "a CloudFormation template to apply instead of the runner template the worker was built with (≤ 51,200 bytes)")
	f.StringVar(&o.stack, "stack", "", "the fleet's stack (default: fleets[].stack of the config)")
	f.StringVar(&o.table, "table", os.Getenv(envStateTable), "the worker's DynamoDB state table, read by --plan and --wait (default $"+envStateTable+", else state_table of the config)")
	f.BoolVar(&o.plan, "plan", false, "create the change set, print it, and change nothing")
	f.BoolVar(&o.wait, "wait", false, "follow the update: stack events as they happen, then the outcome (non-zero exit on failure)")
	f.BoolVar(&o.follow, "follow", false, "follow the fleet's update in progress until it ends, sending nothing")
	f.DurationVar(&o.timeout, "timeout", 0, "how long --plan or --wait follow the update (default 5m for --plan, 1h for --wait)")
	f.DurationVar(&o.interval, "follow-interval", defaultFollowInterval, "how often --plan and --wait look")
	_ = f.MarkHidden("follow-interval")
	return cmd
}

// runUpdate checks the file, sends the command, and follows it when asked.
func runUpdate(ctx context.Context, stdout, stderr io.Writer, o *updateOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.follow {
		if o.properties != "" || o.template != "" || o.plan || o.wait || o.send.dryRun {
			return errors.New("--follow sends nothing: it takes no --properties, --template, --plan, --wait or --dry-run")
		}
		return followInProgress(ctx, stdout, o)
	}
	if o.properties == "" {
		return errors.New(`required flag(s) "properties" not set (or --follow to follow the update in progress)`)
	}
	template := runner.Template
	if o.template != "" {
		b, err := os.ReadFile(o.template)
		if err != nil {
			return fmt.Errorf("reading the template: %w", err)
		}
		template = b
	}
	if len(template) > messages.MaxTemplateBody {
		return fmt.Errorf("the template's %d bytes exceed CloudFormation's %d-byte body limit", len(template), messages.MaxTemplateBody)
	}
	params, err := properties.ParseTemplate(template)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(o.properties)
	if err != nil {
		return fmt.Errorf("reading the properties file: %w", err)
	}
	legacy := map[string]properties.Legacy{}
	for k, v := range runner.SampleKeys {
		legacy[k] = properties.Legacy{Parameter: v.Parameter, Note: v.Note}
	}
	check := func(requireAll bool) (properties.Result, error) {
		entries, ps := properties.Parse(strings.NewReader(string(raw)))
		res, cps := properties.Check(entries, params, properties.Options{RequireAll: requireAll, Legacy: legacy})
		ps = append(ps, cps...)
		if len(ps) > 0 {
			sort.SliceStable(ps, func(i, j int) bool { return lineOrder(ps[i].Line) < lineOrder(ps[j].Line) })
			return properties.Result{}, fmt.Errorf("%s: %w", o.properties, ps)
		}
		return res, nil
	}
	// Every problem of the file first, before anything is asked of AWS.
	res, err := check(false)
	if err != nil {
		return err
	}

	if o.timeout < 0 {
		return fmt.Errorf("--timeout %s: want a positive duration (0: the default)", o.timeout)
	}
	cfg, err := loadConfig(ctx, &o.send)
	if err != nil {
		return err
	}
	if cfg != nil {
		f, ok := cfg.Fleet(o.send.fleet)
		if !ok {
			return fmt.Errorf("fleet %q is not in the worker's configuration", o.send.fleet)
		}
		// The worker updates the stack its config names, whatever --stack says: a different one
		// would be planned, checked and followed here while another is changed.
		if o.stack != "" && f.StackName != "" && o.stack != f.StackName {
			return fmt.Errorf("--stack %s is not fleet %s's stack %s in the worker's configuration, which the worker updates", o.stack, o.send.fleet, f.StackName)
		}
	}
	if cfg != nil && o.template != "" {
		if f, ok := cfg.Fleet(o.send.fleet); ok && !f.AllowCustomTemplate {
			return fmt.Errorf("fleet %s does not accept a custom template (the worker would refuse the command): "+
				"leave out --template to apply the runner template the worker was built with, or set "+
				"allow_custom_template: true on the fleet in the worker's config", o.send.fleet)
		}
	}
	stack := o.stack
	if cfg != nil && stack == "" {
		if f, ok := cfg.Fleet(o.send.fleet); ok {
			stack = f.StackName
		}
	}
	var cf *stacks.Stacks
	// --dry-run asks nothing of AWS: a new stack's required parameters are checked when it is sent.
	if stack != "" && !o.send.dryRun {
		awsCfg, err := rfaws.LoadConfig(ctx, awsOptions(&o.send, cfg))
		if err != nil {
			return err
		}
		cf, _ = stacks.New(cloudformation.NewFromConfig(awsCfg))
		st, exists, err := cf.Describe(ctx, stack)
		if err != nil {
			return fmt.Errorf("checking whether stack %s exists: %w", stack, err)
		}
		// A stack only planned (REVIEW_IN_PROGRESS) is still to be created.
		if !exists || st.Status == "REVIEW_IN_PROGRESS" {
			// A new stack: parameters without a default must be in the file.
			if res, err = check(true); err != nil {
				return err
			}
		}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "%s: note: %s\n", o.properties, n)
	}

	c := messages.NewCommand(o.send.fleet, messages.CommandUpdate, time.Now())
	c.Issuer = o.send.issuer
	c.Update.Parameters = res.Values
	c.Update.Plan = o.plan
	if o.template != "" {
		c.Update.TemplateBody = string(template)
	}
	if !o.plan && !o.wait || o.send.dryRun {
		return send(ctx, stdout, &o.send, c)
	}

	table, _, err := openTable(ctx, &o.send, cfg, o.table, "--plan and --wait read")
	if err != nil {
		return err
	}
	if stack == "" {
		return errors.New("--plan and --wait need the fleet's stack: pass --stack or a config that names it")
	}
	started := time.Now()
	// Events from before this update are history: only new ones are shown.
	seen := map[string]bool{}
	if o.wait && cf != nil {
		if evs, err := cf.Events(ctx, stack, started.Add(-time.Hour)); err == nil {
			for _, ev := range evs {
				seen[ev.ID] = true
			}
		}
	}
	if err := send(ctx, stdout, &o.send, c); err != nil {
		return err
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = defaultWaitTimeout
		if o.plan {
			timeout = defaultPlanTimeout
		}
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	load := func(ctx context.Context, pk, sk string) ([]byte, bool, error) {
		body, _, found, err := table.Load(ctx, pk, sk)
		return body, found, err
	}
	return follow(fctx, stdout, followOptions{load: load, cf: cf, fleet: o.send.fleet, stack: stack, commandID: c.ID,
		since: started.Add(-time.Minute), seen: seen, events: o.wait, interval: o.interval,
		taken: newTakeCheck(table, cfg, c.ID, fmt.Sprintf("update %s of fleet %s", c.ID, o.send.fleet), c.IssuedAt)})
}

func lineOrder(l int) int {
	if l == 0 {
		return int(^uint(0) >> 1)
	}
	return l
}

// awsOptions are the AWS settings of the flags, then of the worker's config.
// openTable opens the worker's state table that a following command reads: flag (--table), else
// the config's state_table. needs says which options read it, for the error when neither names it.
func openTable(ctx context.Context, o *sendOptions, cfg *config.Config, flag, needs string) (*state.Table, aws.Config, error) {
	name := flag
	if name == "" && cfg != nil {
		name = cfg.StateTable
	}
	if name == "" {
		return nil, aws.Config{}, fmt.Errorf("%s the worker's state table: pass --table or --config, or set %s", needs, envStateTable)
	}
	awsCfg, err := rfaws.LoadConfig(ctx, awsOptions(o, cfg))
	if err != nil {
		return nil, aws.Config{}, err
	}
	table, err := state.New(dynamodb.NewFromConfig(awsCfg), name)
	if err != nil {
		return nil, aws.Config{}, err
	}
	return table, awsCfg, nil
}

func awsOptions(o *sendOptions, cfg *config.Config) rfaws.ConfigOptions {
	opts := rfaws.ConfigOptions{Region: o.region, BaseEndpoint: o.endpoint}
	if cfg != nil {
		opts.LoopbackOnly = cfg.LoopbackOnly
		opts.Region = firstOf(opts.Region, cfg.Region)
		opts.BaseEndpoint = firstOf(opts.BaseEndpoint, cfg.Endpoint)
	}
	return opts
}

// followInProgress follows the fleet's update in progress (update --follow), sending nothing.
func followInProgress(ctx context.Context, w io.Writer, o *updateOptions) error {
	if o.timeout < 0 {
		return fmt.Errorf("--timeout %s: want a positive duration (0: the default)", o.timeout)
	}
	cfg, err := loadConfig(ctx, &o.send)
	if err != nil {
		return err
	}
	stack := o.stack
	if cfg != nil {
		f, ok := cfg.Fleet(o.send.fleet)
		if !ok {
			return fmt.Errorf("fleet %q is not in the worker's configuration", o.send.fleet)
		}
		stack = cmp.Or(stack, f.StackName)
	}
	table, awsCfg, err := openTable(ctx, &o.send, cfg, o.table, "--follow reads")
	if err != nil {
		return err
	}
	var cf *stacks.Stacks
	if stack != "" {
		cf, _ = stacks.New(cloudformation.NewFromConfig(awsCfg))
	}
	load := func(ctx context.Context, pk, sk string) ([]byte, bool, error) {
		body, _, found, err := table.Load(ctx, pk, sk)
		return body, found, err
	}
	pk, sk := update.Key(o.send.fleet)
	body, found, err := load(ctx, pk, sk)
	if err != nil {
		return fmt.Errorf("reading the update record of fleet %s: %w", o.send.fleet, err)
	}
	var rec update.Record
	if found {
		if err := json.Unmarshal(body, &rec); err != nil {
			return fmt.Errorf("reading the update record of fleet %s: %w", o.send.fleet, err)
		}
	}
	if !found || rec.Finished() {
		last := "none"
		if found {
			last = fmt.Sprintf("%s %s", rec.CommandID, rec.Outcome)
		}
		return fmt.Errorf("fleet %s has no update in progress (last: %s)", o.send.fleet, last)
	}
	fmt.Fprintf(w, "following update %s of fleet %s (stack %s), started %s\n", rec.CommandID, o.send.fleet, rec.Stack, rec.StartedAt.Format(time.RFC3339))
	timeout := cmp.Or(o.timeout, defaultWaitTimeout)
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return follow(fctx, w, followOptions{load: load, cf: cf, fleet: o.send.fleet, stack: cmp.Or(rec.Stack, stack), commandID: rec.CommandID,
		since: rec.StartedAt.Add(-time.Minute), events: cf != nil, interval: o.interval})
}

type followOptions struct {
	// load reads the fleet's update record (pk, sk of update.Key): the state table's Load.
	load      func(ctx context.Context, pk, sk string) (body []byte, found bool, err error)
	cf        *stacks.Stacks
	fleet     string
	stack     string
	commandID string
	since     time.Time
	seen      map[string]bool
	events    bool
	interval  time.Duration
	// taken tells a refused or never-taken command from one on its way.
	taken takeCheck
}

// follow reads the fleet's update record until this command's update finishes (a plan: until
// it is planned), printing stack events as they happen when asked, then the change set or the
// outcome. A failed update is an error (non-zero exit).
func follow(ctx context.Context, w io.Writer, o followOptions) error {
	pk, sk := update.Key(o.fleet)
	seen := o.seen
	if seen == nil {
		seen = map[string]bool{}
	}
	phase := ""
	printed, busyNoted, seenMine := false, false, false
	eventsErr := "" // the failure of the last events read, said once per run of failures
	var reads readErrors
	for {
		body, found, err := o.load(ctx, pk, sk)
		var rec update.Record
		if err == nil && found {
			rec, err = update.DecodeRecord(body)
		}
		if err != nil {
			// The update runs on whatever this process can read: look again until the timeout.
			reads.note(w, "reading the update record", err)
			found = false
		}
		mine := found && rec.CommandID == o.commandID
		if found && !mine && seenMine {
			// Another update took the fleet's record before this one was seen to end.
			return unknownOutcome{fmt.Errorf("update %s of fleet %s: the fleet's record now holds update %s (phase %s) and this one was not seen to end: see publisher status",
				o.commandID, o.fleet, rec.CommandID, rec.Phase)}
		}
		seenMine = seenMine || mine
		if found && !mine && !rec.Finished() && !busyNoted {
			busyNoted = true
			fmt.Fprintf(w, "another update (%s, phase %s) of fleet %s is unfinished: the worker refuses this one until it ends (see the control queue's DLQ)\n",
				rec.CommandID, rec.Phase, o.fleet)
		}
		if mine && rec.Phase != phase {
			phase = rec.Phase
			// The change set once it is known (executing, or finished before we looked).
			if !printed && rec.ChangeSetID != "" && rec.Phase != update.PhaseChangeSet &&
				(rec.Outcome == "" || rec.Outcome == update.OutcomeSucceeded || rec.Outcome == update.OutcomePlanned ||
					rec.Outcome == update.OutcomeFailed && !rec.ExecutedAt.IsZero()) {
				printChanges(w, rec)
				printed = true
			}
		}
		if o.events && o.cf != nil && (!mine || rec.Phase != update.PhaseChangeSet) {
			evs, err := o.cf.Events(ctx, o.stack, o.since)
			switch {
			case err != nil && eventsErr == "":
				// Said once per run of failures: a missing permission would otherwise look
				// like a stack with no events.
				eventsErr = err.Error()
				fmt.Fprintf(w, "stack events of %s unreadable (the update is still followed): %v\n", o.stack, err)
			case err == nil:
				eventsErr = ""
			}
			if err == nil {
				for _, e := range evs {
					if seen[e.ID] {
						continue
					}
					seen[e.ID] = true
					line := fmt.Sprintf("%s  %-28s %-36s %s", e.Time.UTC().Format("15:04:05"), e.LogicalID, e.ResourceType, e.Status)
					if e.Reason != "" {
						line += "  " + e.Reason
					}
					fmt.Fprintln(w, line)
				}
			}
		}
		if !mine {
			if err := o.taken.check(ctx); err != nil {
				return err
			}
		}
		if mine && rec.Finished() {
			fmt.Fprintln(w, outcomeLine(rec))
			if rec.Outcome == update.OutcomeFailed {
				return fmt.Errorf("update %s of fleet %s failed", rec.CommandID, rec.Fleet)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return unknownOutcome{reads.wrap(fmt.Errorf("following update %s of fleet %s: gave up waiting (phase %q): %w", o.commandID, o.fleet, phase, ctx.Err()))}
		case <-time.After(o.interval):
		}
	}
}

func printChanges(w io.Writer, rec update.Record) {
	fmt.Fprintf(w, "change set %s (%s) of stack %s: %d change(s)\n", rec.ChangeSetName, rec.Type, rec.Stack, len(rec.Changes))
	if len(rec.Changes) == 0 {
		fmt.Fprintln(w, "  (the service lists no resource changes: a parameter-only update)")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ACTION\tRESOURCE\tTYPE\tREPLACEMENT")
	for _, c := range rec.Changes {
		repl := c.Replacement
		if repl == "" {
			repl = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Action, c.LogicalID, c.ResourceType, repl)
	}
	_ = tw.Flush()
}

// outcomeLine is the one-line outcome of an update.
func outcomeLine(rec update.Record) string {
	head := fmt.Sprintf("update %s of fleet %s (stack %s): ", rec.CommandID, rec.Fleet, rec.Stack)
	switch rec.Outcome {
	case update.OutcomeSucceeded:
		return head + fmt.Sprintf("succeeded (%s, %d change(s))", rec.StackStatus, len(rec.Changes))
	case update.OutcomeNoChanges:
		return head + "no changes (the stack already matches)"
	case update.OutcomePlanned:
		return head + fmt.Sprintf("planned: %d change(s), nothing executed", len(rec.Changes))
	default:
		msg := head + "failed"
		if rec.StackStatus != "" {
			msg += " (" + rec.StackStatus + ")"
		}
		if rec.FailedResource != "" {
			msg += ": " + rec.FailedResource
		}
		if rec.Reason != "" {
			msg += ": " + rec.Reason
		}
		return msg
	}
}
