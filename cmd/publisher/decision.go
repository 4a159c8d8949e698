package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/spf13/cobra"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/scalestate"
	"github.com/runnerfleet/runnerfleet/messages"
	"github.com/runnerfleet/runnerfleet/scaling"
)

// defaultDecisionTimeout bounds tick --wait and scale --wait: a running worker takes a command
// within seconds, decides a tick in seconds and applies it within the scale handler's 30 s (the
// group's desired capacity changes when the call returns). Five minutes means the worker is down,
// backlogged or failing.
const defaultDecisionTimeout = 5 * time.Minute

// waitOptions are the --wait flags of tick and scale.
type waitOptions struct {
	wait     bool
	table    string
	timeout  time.Duration
	interval time.Duration
}

func (o *waitOptions) addFlags(cmd *cobra.Command, usage string) {
	f := cmd.Flags()
	f.BoolVar(&o.wait, "wait", false, usage)
	f.StringVar(&o.table, "table", os.Getenv(envStateTable), "the worker's DynamoDB state table, read by --wait (default $"+envStateTable+", else state_table of the config)")
	f.DurationVar(&o.timeout, "timeout", defaultDecisionTimeout, "how long --wait waits (exit status 3 when it passes first)")
	f.DurationVar(&o.interval, "follow-interval", defaultFollowInterval, "how often --wait looks")
	_ = f.MarkHidden("follow-interval")
}

// check refuses a --timeout that would end the wait at once.
func (o *waitOptions) check() error {
	if o.wait && o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration", o.timeout)
	}
	return nil
}

// groupsAPI is the part of the Auto Scaling client scale --wait reads, with the SDK's signature.
type groupsAPI interface {
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
}

// groupSight is what scale --wait sees of the fleet's group at one look.
type groupSight struct {
	Name              string
	Desired, Min, Max int
	// InService, Launching (Pending, Pending:Wait, Pending:Proceed) and Leaving (Terminating…)
	// count the group's instances.
	InService, Launching, Leaving int
}

func (g groupSight) String() string {
	s := fmt.Sprintf("group %s: desired %d (min %d, max %d), %d in service", g.Name, g.Desired, g.Min, g.Max, g.InService)
	if g.Launching > 0 {
		s += fmt.Sprintf(", %d launching", g.Launching)
	}
	if g.Leaving > 0 {
		s += fmt.Sprintf(", %d leaving (drained first)", g.Leaving)
	}
	return s
}

// describeGroup reads the group's capacity and counts its instances (one DescribeAutoScalingGroups).
func describeGroup(ctx context.Context, api groupsAPI, name string) (groupSight, error) {
	out, err := api.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return groupSight{}, fmt.Errorf("describing group %s: %w", name, err)
	}
	if len(out.AutoScalingGroups) == 0 {
		return groupSight{}, fmt.Errorf("describing group %s: %w", name, scale.ErrGroupNotFound)
	}
	g := out.AutoScalingGroups[0]
	s := groupSight{Name: name, Desired: int(aws.ToInt32(g.DesiredCapacity)), Min: int(aws.ToInt32(g.MinSize)), Max: int(aws.ToInt32(g.MaxSize))}
	for _, in := range g.Instances {
		switch st := string(in.LifecycleState); {
		case st == "InService":
			s.InService++
		case strings.HasPrefix(st, "Pending"):
			s.Launching++
		case strings.HasPrefix(st, "Terminating"):
			s.Leaving++
		}
	}
	return s, nil
}

// sendAndWait sends c and, with --wait, follows the decision it causes (tick, scale; withGroup:
// until the group's desired capacity is what the decision applied). what names c in messages.
func sendAndWait(ctx context.Context, stdout io.Writer, o *sendOptions, wo *waitOptions, c messages.Command, what string, withGroup bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := wo.check(); err != nil {
		return err
	}
	if !wo.wait || o.dryRun {
		return send(ctx, stdout, o, c)
	}
	watch, err := newDecisionWatch(ctx, o, wo, c, what, withGroup)
	if err != nil {
		return err
	}
	if err := send(ctx, stdout, o, c); err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, wo.timeout)
	defer cancel()
	return followDecision(fctx, stdout, watch)
}

// newGroupsAPI builds the Auto Scaling client scale --wait reads; tests replace it.
var newGroupsAPI = func(awsCfg aws.Config) groupsAPI { return autoscaling.NewFromConfig(awsCfg) }

// decisionWatch is what tick --wait and scale --wait read: the worker's command ledger, the
// fleet's scale record (the handler's last decision), and for scale the fleet's group.
type decisionWatch struct {
	taken takeCheck
	// record reads the fleet's scale record (infra/aws/scalestate).
	record func(ctx context.Context) (scale.Record, error)
	// group reads the fleet's group; nil: the wait ends with the decision (tick).
	group func(ctx context.Context) (groupSight, error)
	fleet string
	// id is the command's id: the decision it caused carries it as LastMessageID.
	id string
	// what names the command in messages ("scale c1 of fleet blue (pin at 3)").
	what string
	// pin is the capacity scale --desired asked for; nil for tick and --resume.
	pin      *int
	interval time.Duration
}

// newDecisionWatch builds what --wait reads for command c, before c is sent (a missing table or
// config is said before anything is sent). withGroup: also the fleet's group (scale).
func newDecisionWatch(ctx context.Context, o *sendOptions, wo *waitOptions, c messages.Command, what string, withGroup bool) (decisionWatch, error) {
	cfg, err := loadConfig(ctx, o)
	if err != nil {
		return decisionWatch{}, err
	}
	var groupName string
	if withGroup {
		if cfg == nil {
			return decisionWatch{}, errors.New("scale --wait needs the worker's configuration (--config) to know the fleet's Auto Scaling group")
		}
		f, ok := cfg.Fleet(o.fleet)
		if !ok {
			return decisionWatch{}, fmt.Errorf("fleet %q is not in the worker's configuration", o.fleet)
		}
		groupName = f.GroupName
	}
	table, awsCfg, err := openTable(ctx, o, cfg, wo.table, "--wait reads")
	if err != nil {
		return decisionWatch{}, err
	}
	store, err := scalestate.New(table)
	if err != nil {
		return decisionWatch{}, err
	}
	d := decisionWatch{
		taken: newTakeCheck(table, cfg, c.ID, what, c.IssuedAt),
		record: func(ctx context.Context) (scale.Record, error) {
			rec, _, err := store.Load(ctx, o.fleet)
			return rec, err
		},
		fleet: o.fleet, id: c.ID, what: what, interval: wo.interval,
	}
	if withGroup {
		api := newGroupsAPI(awsCfg)
		d.group = func(ctx context.Context) (groupSight, error) { return describeGroup(ctx, api, groupName) }
	}
	if c.Scale != nil && c.Scale.Desired != nil {
		d.pin = new(*c.Scale.Desired)
	}
	return d, nil
}

// followDecision waits until the worker has taken the command (its ledger, or the decision it
// caused), prints the decision the scale handler recorded for it, and for scale waits until the
// group's desired capacity is what the decision applied, saying why that differs from the pin
// when it does. Instances launching are not waited for. A refusal is an error with the worker's
// reason (exit 1); a timeout, or reads failing until it, is unknownOutcome (exit 3).
func followDecision(ctx context.Context, w io.Writer, d decisionWatch) error {
	stamp := func() string { return time.Now().UTC().Format("15:04:05") }
	var reads readErrors
	took := false
	var accepted time.Time
	var decided *scale.Record // the decision followed: this command's, or a later one
	var decidedAt time.Time   // when it was first seen here
	lastGroup, hinted := "", false
	fmt.Fprintf(w, "%s  waiting for the worker to take %s\n", stamp(), d.what)
	sayTaken := func() {
		if !took {
			took = true
			when := ""
			if !accepted.IsZero() {
				when = " at " + accepted.UTC().Format("15:04:05")
			}
			fmt.Fprintf(w, "%s  the worker took the command%s\n", stamp(), when)
		}
	}
	for {
		if decided == nil {
			// Until the decision shows: a refusal (by the command checks, or by the handler after
			// it took the command), or a command never taken.
			l, err := d.taken.look(ctx)
			if err != nil {
				return err
			}
			if l.readErr != nil {
				reads.note(w, "reading the command ledger", l.readErr)
			}
			if l.seen {
				accepted = l.entry.AcceptedAt
				sayTaken()
			}
		}
		rec, err := d.record(ctx)
		switch {
		case err != nil:
			reads.note(w, "reading the scale record of fleet "+d.fleet, err)
		case decided == nil && rec.LastMessageID == d.id:
			sayTaken()
			fmt.Fprintf(w, "%s  %s\n", stamp(), decisionText("decided", rec))
			decided, decidedAt = &rec, time.Now()
		case decided == nil && took && !accepted.IsZero() && rec.LastDecision.After(accepted):
			// The fleet's ticks run in order after the command: a later tick decided before this
			// command's decision was read here.
			fmt.Fprintf(w, "%s  a later tick decided before this command's decision was read (the worker's log has it: \"scale decision\", message_id %s); the latest: %s\n",
				stamp(), d.id, decisionText("decided", rec))
			decided, decidedAt = &rec, time.Now()
		case decided != nil && !rec.LastDecision.Equal(decided.LastDecision):
			fmt.Fprintf(w, "%s  %s\n", stamp(), decisionText("a later tick decided", rec))
			decided, decidedAt = &rec, time.Now()
		case decided != nil && rec.LastMessageID == decided.LastMessageID:
			decided = &rec // the same decision, its failed calls written since
		}
		if decided != nil {
			if d.group == nil {
				return nil
			}
			if done := d.followGroup(ctx, w, *decided, decidedAt, &reads, &lastGroup, &hinted); done {
				return nil
			}
			// The group is not where the decision put it, and Auto Scaling refused the call that
			// would have (other failed calls — protecting a busy instance, say — do not stop it).
			if refused := setDesiredRefusals(decided.LastApplyErrors); len(refused) > 0 {
				whose := "the worker decided"
				if decided.LastMessageID != d.id {
					whose = "a later tick decided"
				}
				return fmt.Errorf("%s: %s desired %s and Auto Scaling refused it: %s (the next ticks try again; the worker's log: \"applying scale decision\")",
					d.what, whose, desiredText(decided), strings.Join(refused, "; "))
			}
		}
		select {
		case <-ctx.Done():
			return unknownOutcome{reads.wrap(d.gaveUp(decided, took, lastGroup, ctx.Err()))}
		case <-time.After(d.interval):
		}
	}
}

// followGroup looks at the group once after a decision: it prints the group when it changed and
// reports true once the group's desired capacity is what the decision applied (or the decision
// was held: a cycle owns the capacity, so there is nothing to wait for).
func (d decisionWatch) followGroup(ctx context.Context, w io.Writer, rec scale.Record, decidedAt time.Time, reads *readErrors, lastGroup *string, hinted *bool) bool {
	stamp := time.Now().UTC().Format("15:04:05")
	g, err := d.group(ctx)
	if err != nil {
		reads.note(w, "reading the fleet's group", err)
		return false
	}
	if s := g.String(); s != *lastGroup {
		fmt.Fprintf(w, "%s  %s\n", stamp, s)
		*lastGroup = s
	}
	if rec.LastDesired == nil {
		fmt.Fprintf(w, "%s  the worker does not record the capacity it applied (a worker older than this publisher): the decision above says what it did\n", stamp)
		return true
	}
	applied := *rec.LastDesired
	held := rec.LastAction == scale.ActionHeld
	if g.Desired != applied && !held {
		if !*hinted && time.Since(decidedAt) > scale.DefaultApplyTimeout {
			*hinted = true
			fmt.Fprintf(w, "%s  the group's desired capacity is still %d, not the %d the worker applied, %s after the decision: an Auto Scaling call may have failed (the worker's log: \"applying scale decision\"); waiting on until --timeout\n",
				stamp, g.Desired, applied, scale.DefaultApplyTimeout)
		}
		return false
	}
	if d.pin != nil {
		if rec.Pin == nil || rec.Pin.CommandID != d.id {
			fmt.Fprintf(w, "%s  note: the fleet's pin is no longer this command's (%s): another scale command came after it\n", stamp, pinText(rec.Pin))
		} else if gap := pinGap(*d.pin, applied, rec.LastAction, g); gap != "" {
			fmt.Fprintf(w, "%s  the pin asks for %d; the worker applied %d: %s\n", stamp, *d.pin, applied, gap)
		}
	}
	if held {
		fmt.Fprintf(w, "%s  %s: taken, and held: a cycle owns the fleet's capacity (group desired %d)\n", stamp, d.what, g.Desired)
		return true
	}
	fmt.Fprintf(w, "%s  %s: done: the group's desired capacity is %d, as the worker applied (%d in service", stamp, d.what, g.Desired, g.InService)
	if g.Launching > 0 {
		fmt.Fprintf(w, ", %d launching: not waited for, see publisher status", g.Launching)
	}
	fmt.Fprintln(w, ")")
	return true
}

// gaveUp is the error of a wait whose timeout passed: what was still awaited.
func (d decisionWatch) gaveUp(decided *scale.Record, took bool, lastGroup string, err error) error {
	switch {
	case decided != nil && decided.LastDesired != nil:
		return fmt.Errorf("%s: the worker decided desired %d at %s, and the group did not get there (%s): gave up waiting: %w",
			d.what, *decided.LastDesired, decided.LastDecision.UTC().Format(time.RFC3339), cmp.Or(lastGroup, "group unread"), err)
	case took:
		return fmt.Errorf("%s: the worker took it, and its decision did not show in the fleet's scale record (the worker's log: \"scale decision\" with message_id %s): gave up waiting: %w",
			d.what, d.id, err)
	}
	return fmt.Errorf("waiting for the worker to take %s: gave up waiting: %w", d.what, err)
}

// decisionText is one line of a recorded decision: when, the desired capacity and the action,
// and the handler's reason.
// setDesiredRefusals are the failed calls of a decision that set the desired capacity.
func setDesiredRefusals(failed []string) []string {
	var out []string
	for _, f := range failed {
		if strings.HasPrefix(f, "set_desired:") {
			out = append(out, f)
		}
	}
	return out
}

// desiredText is the desired capacity a decision applied, or "?" from a worker that does not say.
func desiredText(rec *scale.Record) string {
	if rec.LastDesired == nil {
		return "?"
	}
	return strconv.Itoa(*rec.LastDesired)
}

func decisionText(verb string, rec scale.Record) string {
	s := verb + " at " + rec.LastDecision.UTC().Format("15:04:05")
	switch {
	case rec.LastDesired != nil && rec.LastAction != "":
		s += fmt.Sprintf(": desired %d (%s)", *rec.LastDesired, rec.LastAction)
	case rec.LastDesired != nil:
		s += fmt.Sprintf(": desired %d", *rec.LastDesired)
	}
	return s + ": " + rec.LastReason
}

func pinText(p *scale.Pin) string {
	switch {
	case p == nil:
		return "none: the policy decides"
	case p.Until.IsZero():
		return fmt.Sprintf("pinned at %d until resumed, by command %s", p.Desired, p.CommandID)
	}
	return fmt.Sprintf("pinned at %d until %s, by command %s", p.Desired, p.Until.UTC().Format(time.RFC3339), p.CommandID)
}

// pinGap says why the desired capacity a pinned decision applied differs from the pin asked for,
// from the decision's action and the group's bounds; "" when it does not differ. It mirrors
// scaling.Decide's pinned branch: the group's MinSize and MaxSize win, busy instances stay until
// idle, launches not made are cancelled before instances go.
func pinGap(asked, applied int, action string, g groupSight) string {
	switch {
	case applied == asked:
		return ""
	case action == scale.ActionHeld:
		return "the tick was held (the decision says why: a cycle owns the fleet's capacity): the pin applies from the first tick after it"
	case g.Max == 0:
		return "the group's MaxSize is 0: the fleet is switched off in Auto Scaling, and its idle instances go"
	case asked > g.Max && applied == g.Max:
		return fmt.Sprintf("the group's MaxSize is %d, and the group's bounds win over a pin (raise MaxSize with publisher update)", g.Max)
	case asked < g.Min && applied == g.Min:
		return fmt.Sprintf("the group's MinSize is %d, and the group's bounds win over a pin (lower MinSize with publisher update)", g.Min)
	case applied > asked:
		return fmt.Sprintf("instances above the pin are busy (they stay until their jobs end) or beyond the %d removed a tick, "+
			"or launches not made were cancelled first: later ticks remove idle instances until %d (the decision above says which)",
			scaling.MaxPinnedRemovals, asked)
	}
	return "the decision above says why; later ticks go on towards the pin"
}
