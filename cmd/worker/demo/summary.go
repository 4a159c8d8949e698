package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Summary is what the demo saw, from the worker's /metrics and the emulator's state and log.
type Summary struct {
	// Received, Acked, DeadLettered, Nacked count messages by kind (all queues).
	Received, Acked, DeadLettered, Nacked map[string]float64
	// Unknown counts messages acked as of a kind no handler takes yet.
	Unknown float64
	// Ticks counts ticks by source (schedule, command).
	Ticks map[string]float64
	// Decisions counts scaling decisions by action (scale_out, scale_in, steady).
	Decisions map[string]float64
	// Drains counts finished drains by outcome; Heartbeats the lifecycle heartbeats they sent.
	Drains     map[string]float64
	Heartbeats float64
	// Emitted counts the EventBridge events the emulator emitted, by detail-type.
	Emitted map[string]int
	// HookTimeouts counts lifecycle actions that ended at their timeout (no drain answered);
	// Abandoned counts actions completed with ABANDON (a launch gate refusing an instance).
	HookTimeouts, Abandoned int
	// DeadLetterDepth is the number of messages in the two DLQs at the end.
	DeadLetterDepth int
	// Jobs are the simulator's job totals; KilledInLog counts job.killed in the emulator's log.
	Jobs        runnersim.Totals
	KilledInLog int
	// KilledOn lists, per instance whose jobs were killed, what the emulator's log says happened
	// to it (for the error the demo then exits with).
	KilledOn map[string][]string
	// Busy is the busy instance the demo terminated, the jobs it ran then, and how long it waited
	// in Terminating:Wait (from the emulator's log).
	Busy       string
	BusyJobs   int
	BusyWaited time.Duration
	// Desired is the group's desired capacity through the demo (start, peak, end).
	DesiredStart, DesiredPeak, DesiredEnd int
	// Instances are the group's instances at the end (id: lifecycle state).
	Instances []string
	// CommandID is the id the publisher printed.
	CommandID string
	// Stack is the fleet's stack, made from the runner template.
	Stack string
}

// expectedKinds are the kinds the demo makes arrive; Run fails unless the worker received each.
// (Parameter changes are not among them: the token parameter is written before the fleet stack
// creates the rule that would deliver its changes, as an operator does.)
var expectedKinds = []messages.Kind{
	messages.KindLaunchAction, messages.KindTerminateAction, messages.KindDrainStep, messages.KindSpotInterruption,
	messages.KindRebalance, messages.KindStateChange, messages.KindScheduled,
	messages.KindStackStatus, messages.KindCommand,
}

// scrape reads a Prometheus text exposition.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := netguard.HTTPClient(5 * time.Second).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// sumBy adds family's counters by the value of label (other labels summed over).
func sumBy(fams map[string]*dto.MetricFamily, family, label string) map[string]float64 {
	out := map[string]float64{}
	f, ok := fams[family]
	if !ok {
		return out
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// fill reads the worker's /metrics into the summary.
func (s *Summary) fill(fams map[string]*dto.MetricFamily) {
	s.Received = sumBy(fams, "runnerfleet_messages_received_total", "kind")
	s.Acked = sumBy(fams, "runnerfleet_messages_acked_total", "kind")
	s.DeadLettered = sumBy(fams, "runnerfleet_messages_dead_lettered_total", "kind")
	s.Nacked = sumBy(fams, "runnerfleet_messages_nacked_total", "kind")
	s.Ticks = sumBy(fams, "runnerfleet_ticks_total", "source")
	s.Decisions = sumBy(fams, "runnerfleet_scale_decisions_total", "action")
	s.Drains = sumBy(fams, "runnerfleet_drain_finished_total", "outcome")
	s.Heartbeats = total(sumBy(fams, "runnerfleet_drain_heartbeats_total", "fleet"))
	s.Unknown = total(sumBy(fams, "runnerfleet_messages_unknown_total", "queue"))
}

// fillLog reads the emulator's log into the summary: emitted events, hook timeouts, killed jobs
// and how long the busy instance waited in Terminating:Wait.
func (s *Summary) fillLog(log []emulator.LogEvent) {
	s.Emitted = map[string]int{}
	s.HookTimeouts, s.Abandoned, s.KilledInLog = 0, 0, 0
	s.KilledOn = map[string][]string{}
	history := map[string][]string{}
	var waitAt, doneAt time.Time
	for _, ev := range log {
		if id := ev.String("instance_id"); id != "" && ev.Kind != "job.start" && ev.Kind != "job.end" {
			history[id] = append(history[id], fmt.Sprintf("%d %s %s", ev.Seq, ev.Kind, eventDetail(ev)))
		}
		switch ev.Kind {
		case "event.emitted":
			s.Emitted[ev.String("detail_type")]++
		case "hook.timeout":
			s.HookTimeouts++
		case emulator.KindJobKilled:
			// The simulator's own event, one per killed job (the emulator's per-termination
			// summary is instance.jobs_killed and is not counted again).
			s.KilledInLog++
			s.KilledOn[ev.String("instance_id")] = nil
		case "instance.state":
			if ev.String("instance_id") == s.Busy && ev.String("to") == "Terminating:Wait" && waitAt.IsZero() {
				waitAt = ev.Time
			}
		case "hook.complete":
			if ev.String("result") == "ABANDON" {
				s.Abandoned++
			}
			// The terminate action's completion: the busy instance's launch action (the launch
			// gate's CONTINUE) completed before it entered Terminating:Wait.
			if ev.String("instance_id") == s.Busy && !waitAt.IsZero() && doneAt.IsZero() {
				doneAt = ev.Time
			}
		}
	}
	for id := range s.KilledOn {
		s.KilledOn[id] = history[id]
	}
	if !waitAt.IsZero() && doneAt.After(waitAt) {
		s.BusyWaited = doneAt.Sub(waitAt)
	}
}

// eventDetail is the telling fields of a log event, for the killed-jobs error.
func eventDetail(ev emulator.LogEvent) string {
	var parts []string
	for _, k := range []string{"from", "to", "result", "by", "document", "status", "killed", "open"} {
		if v, ok := ev.Fields[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}

// killedError says which instances lost jobs and what happened to them; nil when none did.
func (s *Summary) killedError() error {
	if s.KilledInLog == 0 && s.Jobs.Killed == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d jobs killed (simulator), %d (emulator log)", s.Jobs.Killed, s.KilledInLog)
	for id, h := range s.KilledOn {
		fmt.Fprintf(&b, "\n%s:\n  %s", id, strings.Join(h, "\n  "))
	}
	return errors.New(b.String())
}

// missing names what the worker has not seen yet (the last phase's wait).
func (s *Summary) missing() []string {
	var out []string
	for _, k := range expectedKinds {
		if s.Received[string(k)] < 1 {
			out = append(out, "a "+string(k)+" message")
		}
	}
	if s.Ticks["command"] < 1 {
		out = append(out, "the published tick handled")
	}
	if s.Ticks["schedule"] < 1 {
		out = append(out, "a scheduled tick handled")
	}
	if s.DeadLettered["invalid"] < 1 {
		out = append(out, "the malformed body dead-lettered")
	}
	if s.Received["unknown"] < 1 {
		out = append(out, "the unknown event acked")
	}
	return out
}

func (s *Summary) print(out io.Writer) {
	fmt.Fprintln(out, "\nRunnerFleet demo summary (worker /metrics, the emulator's state and log, the runner simulator)")
	fmt.Fprintf(out, "fleet stack %s from the runner template; group desired capacity %d → %d (peak) → %d\n",
		s.Stack, s.DesiredStart, s.DesiredPeak, s.DesiredEnd)
	fmt.Fprintf(out, "scale decisions: %s\n", counts(s.Decisions))
	fmt.Fprintf(out, "drains finished: %s; lifecycle heartbeats sent: %.0f; hooks ended at their timeout: %d; actions abandoned: %d\n",
		counts(s.Drains), s.Heartbeats, s.HookTimeouts, s.Abandoned)
	if s.Busy != "" {
		fmt.Fprintf(out, "busy instance %s terminated with %d running job(s): it waited %s in Terminating:Wait until they ended\n",
			s.Busy, s.BusyJobs, s.BusyWaited.Round(100*time.Millisecond))
	}
	fmt.Fprintf(out, "jobs: %d started, %d finished, %d killed (simulator); %d killed (emulator log)\n",
		s.Jobs.Started, s.Jobs.Finished, s.Jobs.Killed, s.KilledInLog)
	fmt.Fprintf(out, "ticks handled: %.0f from the schedule rule, %.0f from `publisher tick` (command %s)\n", s.Ticks["schedule"], s.Ticks["command"], s.CommandID)
	fmt.Fprintf(out, "acked as unknown: %.0f; messages in the DLQs: %d\n\n", s.Unknown, s.DeadLetterDepth)

	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "kind\treceived\tacked\tdead-lettered\tnacked\thandled by")
	kinds := make([]string, 0, len(s.Received))
	for k := range s.Received {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		by := "no handler: acked and counted as unknown"
		switch messages.Kind(k) {
		case messages.KindCommand, messages.KindScheduled:
			by = "tick → scale handler"
		case messages.KindTerminateAction, messages.KindDrainStep:
			by = "drain handler"
		case messages.KindSpotInterruption, messages.KindRebalance, messages.KindStateChange:
			by = "interrupt handler"
		case messages.KindLaunchAction:
			by = "launch gate"
		case messages.KindParameterChange:
			by = "cycle handler (token rotation)"
		case messages.KindStackStatus:
			by = "update handler (follows a stack update)"
		case "invalid":
			by = "DLQ with its reason"
		case messages.KindUnknown:
			by = "acked and counted as unknown"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%s\n", k, s.Received[k], s.Acked[k], s.DeadLettered[k], s.Nacked[k], by)
	}
	tw.Flush()
	var emitted []string
	for dt, n := range s.Emitted {
		emitted = append(emitted, fmt.Sprintf("%s ×%d", dt, n))
	}
	sort.Strings(emitted)
	fmt.Fprintf(out, "events the emulator emitted: %s\n", strings.Join(emitted, ", "))
	fmt.Fprintf(out, "group instances now: %s\n", strings.Join(s.Instances, ", "))
}

// counts prints a label → count map as "a 1, b 2" (sorted), or "none".
func counts(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// readMetrics fills the summary from the worker's /metrics; false when it did not answer.
func (s *Summary) readMetrics(metricsURL string) bool {
	m, err := scrape(metricsURL + "/metrics")
	if err != nil {
		return false
	}
	s.fill(m)
	return true
}

// readLog fills the summary from the emulator's log.
func (s *Summary) readLog(ctx context.Context, emu *emulator.Emulator) error {
	log, err := emu.Log(ctx, 0)
	if err != nil {
		return fmt.Errorf("reading the emulator's log: %w", err)
	}
	s.fillLog(log)
	return nil
}
