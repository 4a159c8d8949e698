package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/spf13/cobra"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/update"
	"github.com/runnerfleet/runnerfleet/infra/aws/cyclestate"
	"github.com/runnerfleet/runnerfleet/infra/aws/marks"
	"github.com/runnerfleet/runnerfleet/infra/aws/scalestate"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// statusScrapeTimeout bounds the scrape of each runner by status: a person is waiting.
const statusScrapeTimeout = 3 * time.Second

type statusOptions struct {
	send  sendOptions
	table string
	json  bool
}

func newStatusCmd() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status --fleet NAME [--json]",
		Short: "Show a fleet's instances, jobs, and the drains, cycles and updates in progress",
		Long: `status reads, without asking the worker: the fleet's Auto Scaling group (desired, min, max, the
launch template version launches use), the scale record (pinning, the last decision), the cycle
and update records, the drains in progress and the marks spot and rebalance notices left (from the
state table), and every InService runner's metrics (jobs, capacity, whether GitLab accepts its job
requests). It prints tables, or with
--json one JSON document.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	o.send.addReadFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&o.table, "table", os.Getenv(envStateTable), "the worker's DynamoDB state table (default $"+envStateTable+", else state_table of the config)")
	f.BoolVar(&o.json, "json", false, "print one JSON document instead of tables")
	return cmd
}

// Status is what publisher status shows (and prints with --json).
type Status struct {
	Fleet string    `json:"fleet"`
	Group string    `json:"group"`
	At    time.Time `json:"at"`
	// Desired, Min and Max are the group's; CurrentTemplate and CurrentVersion are the launch
	// template (id) and version launches use.
	Desired         int    `json:"desired"`
	Min             int    `json:"min"`
	Max             int    `json:"max"`
	CurrentTemplate string `json:"current_template,omitempty"`
	CurrentVersion  string `json:"current_version,omitempty"`
	// Pinned is the operator's pin, if one is in force.
	Pinned *StatusPin `json:"pinned,omitempty"`
	// LastDecision and LastReason are the scale handler's; LastAction (scale_out, scale_in,
	// steady, held) and LastDesired what it applied (absent from records of older workers).
	LastDecision time.Time        `json:"last_decision,omitzero"`
	LastReason   string           `json:"last_reason,omitempty"`
	LastAction   string           `json:"last_action,omitempty"`
	LastDesired  *int             `json:"last_desired,omitempty"`
	Instances    []StatusInstance `json:"instances"`
	Drains       []StatusDrain    `json:"drains"`
	Cycle        *cycle.Record    `json:"cycle,omitempty"`
	Update       *update.Record   `json:"update,omitempty"`
}

// StatusPin is a pin in force.
type StatusPin struct {
	Desired int       `json:"desired"`
	Until   time.Time `json:"until,omitzero"`
	Issuer  string    `json:"issuer,omitempty"`
}

// StatusInstance is one instance of the group.
type StatusInstance struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Template and Version are the launch template (id) and version it was launched from.
	Template  string        `json:"launch_template,omitempty"`
	Version   string        `json:"version,omitempty"`
	Protected bool          `json:"protected"`
	Age       time.Duration `json:"-"`
	// AgeSeconds is Age for --json readers: whole seconds since launch.
	AgeSeconds int64 `json:"age_s"`
	// Intake is open, closed (draining), rejected (GitLab refuses its job requests), or unknown.
	Intake string `json:"intake"`
	// Jobs and Capacity are from the runner's metrics (-1: not read).
	Jobs     int `json:"jobs"`
	Capacity int `json:"capacity"`
	// Scraped is when its metrics were read; ScrapeError why they could not be.
	Scraped     time.Time `json:"scraped,omitzero"`
	ScrapeError string    `json:"scrape_error,omitempty"`
}

// StatusDrain is a drain in progress.
type StatusDrain struct {
	InstanceID string        `json:"instance_id"`
	Phase      string        `json:"phase"`
	Age        time.Duration `json:"-"`
	// AgeSeconds is Age for --json readers: whole seconds since the drain started.
	AgeSeconds int64  `json:"age_s"`
	Jobs       int    `json:"jobs"`
	Note       string `json:"note,omitempty"`
}

// drainView is the part of handlers/drain's record (JSON body of "drain#<token>" items) that
// status shows.
type drainView struct {
	Fleet      string    `json:"fleet"`
	InstanceID string    `json:"instance_id"`
	Phase      string    `json:"phase"`
	StartedAt  time.Time `json:"started_at"`
	Jobs       int       `json:"jobs"`
	Note       string    `json:"note"`
}

func runStatus(ctx context.Context, stdout io.Writer, o *statusOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := loadConfig(ctx, &o.send)
	if err != nil {
		return err
	}
	if cfg == nil {
		return errors.New("status needs the worker's configuration (the fleet's group and metrics): pass --config")
	}
	f, ok := cfg.Fleet(o.send.fleet)
	if !ok {
		return fmt.Errorf("fleet %q is not in the worker's configuration", o.send.fleet)
	}
	tbl, awsCfg, err := openTable(ctx, &o.send, cfg, o.table, "status reads")
	if err != nil {
		return err
	}
	group, err := cyclestate.NewGroup(autoscaling.NewFromConfig(awsCfg), ec2.NewFromConfig(awsCfg))
	if err != nil {
		return err
	}
	g, err := group.Describe(ctx, f.GroupName)
	if err != nil {
		return err
	}
	if g.AddressErr != nil {
		return fmt.Errorf("describing the instances of group %s: %w", g.Name, g.AddressErr)
	}
	now := time.Now()
	st := Status{Fleet: f.Name, Group: g.Name, At: now.UTC(), Desired: g.Desired, Min: g.Min, Max: g.Max,
		CurrentTemplate: g.CurrentTemplate, CurrentVersion: g.CurrentVersion}

	scales, _ := scalestate.New(tbl)
	if rec, _, err := scales.Load(ctx, f.Name); err != nil {
		return err
	} else {
		st.LastDecision, st.LastReason = rec.LastDecision, rec.LastReason
		st.LastAction, st.LastDesired = rec.LastAction, rec.LastDesired
		if rec.Pin.ActiveAt(now) {
			st.Pinned = &StatusPin{Desired: rec.Pin.Desired, Until: rec.Pin.Until, Issuer: rec.Pin.Issuer}
		}
	}
	cycles, _ := cyclestate.New(tbl)
	if rec, _, err := cycles.Load(ctx, f.Name); err != nil {
		return err
	} else if rec.ID != "" {
		st.Cycle = &rec
	}
	pk, sk := update.Key(f.Name)
	if body, _, found, err := tbl.Load(ctx, pk, sk); err != nil {
		return err
	} else if found {
		rec, err := update.DecodeRecord(body)
		if err != nil {
			return err
		}
		st.Update = &rec
	}
	bodies, err := tbl.Unfinished(ctx, "drain#")
	if err != nil {
		return err
	}
	draining := map[string]bool{}
	for _, b := range bodies {
		var d drainView
		if json.Unmarshal(b, &d) != nil || d.Fleet != f.Name {
			continue
		}
		draining[d.InstanceID] = true
		age := now.Sub(d.StartedAt).Round(time.Second)
		st.Drains = append(st.Drains, StatusDrain{InstanceID: d.InstanceID, Phase: d.Phase, Age: age, AgeSeconds: int64(age.Seconds()), Jobs: d.Jobs, Note: d.Note})
	}
	sort.Slice(st.Drains, func(i, j int) bool { return st.Drains[i].Age > st.Drains[j].Age })
	// The marks spot and rebalance notices left: the worker's tick counts a marked instance as
	// offering nothing, whatever its runner still answers.
	store, err := marks.NewStore(tbl)
	if err != nil {
		return err
	}
	ms, err := store.List(ctx, f.GroupName)
	if err != nil {
		return err
	}
	marked := map[string]interrupt.Mark{}
	for _, mk := range ms {
		marked[mk.InstanceID] = mk
	}

	client := &http.Client{Timeout: statusScrapeTimeout}
	if cfg.LoopbackOnly {
		client = netguard.HTTPClient(statusScrapeTimeout)
	}
	sc, err := scrape.New(scrape.Config{Timeout: statusScrapeTimeout}, client)
	if err != nil {
		return err
	}
	var targets []scrape.Target
	for _, m := range g.Members {
		if m.State.InService() {
			targets = append(targets, scrape.Target{InstanceID: m.ID, PrivateIP: m.PrivateIP})
		}
	}
	results := map[string]scrape.Result{}
	if len(targets) > 0 {
		url := f.MetricsURL
		if url == "" {
			url = "http://{{.PrivateIP}}:9252/metrics"
		}
		rs, err := sc.Scrape(ctx, url, targets)
		if err != nil {
			return err
		}
		for _, r := range rs {
			results[r.InstanceID] = r
		}
	}
	st.At = time.Now().UTC() // ages of scrapes are read against the end of the scrape
	for _, m := range g.Members {
		in := StatusInstance{ID: m.ID, State: string(m.State), Template: m.Template, Version: m.Version, Protected: m.Protected, Jobs: -1, Capacity: -1, Intake: "unknown"}
		if !m.LaunchedAt.IsZero() {
			in.Age = now.Sub(m.LaunchedAt).Round(time.Second)
			in.AgeSeconds = int64(in.Age.Seconds())
		}
		r, scraped := results[m.ID]
		switch {
		case scraped && r.Known:
			in.Jobs, in.Capacity, in.Scraped = r.BusyJobs, r.Capacity, r.At.UTC()
			in.Intake = "open"
			if r.Rejected {
				in.Intake = "rejected"
			}
		case scraped:
			in.ScrapeError, in.Scraped = string(r.Reason), r.At.UTC()
		}
		if draining[m.ID] || m.State.Leaving() {
			in.Intake = "closed (draining)"
		} else if mk, ok := marked[m.ID]; ok {
			in.Intake, in.Capacity = markedIntake(mk, in.Intake, in.Capacity)
		}
		st.Instances = append(st.Instances, in)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	renderStatus(stdout, st)
	return nil
}

// markedIntake is the intake and capacity status shows for an instance a notice marked, as the
// worker's tick counts it: an instance whose intake a notice stopped offers nothing, whatever
// its runner still answers (it finishes the jobs it has).
func markedIntake(m interrupt.Mark, intake string, capacity int) (string, int) {
	switch {
	case m.SpotInterrupted:
		return "stopped (spot interruption)", 0
	case m.IntakeStopped:
		return "stopped (rebalance recommendation)", 0
	case m.RebalanceRecommended:
		return intake + " (rebalance recommended)", capacity
	}
	return intake, capacity
}

// renderStatus prints st as a terminal would show it: a summary, then tables.
func renderStatus(w io.Writer, st Status) {
	pin := "no"
	if p := st.Pinned; p != nil {
		pin = fmt.Sprintf("at %d", p.Desired)
		if !p.Until.IsZero() {
			pin += " until " + p.Until.UTC().Format(time.RFC3339)
		}
		if p.Issuer != "" {
			pin += " by " + p.Issuer
		}
	}
	template := ""
	if st.CurrentTemplate != "" {
		template = " (" + st.CurrentTemplate + ")"
	}
	fmt.Fprintf(w, "fleet %s  group %s  desired %d  min %d  max %d  launch template version %s%s  pinned: %s\n",
		st.Fleet, st.Group, st.Desired, st.Min, st.Max, orDash(st.CurrentVersion), template, pin)
	if !st.LastDecision.IsZero() {
		applied := ""
		if st.LastAction != "" && st.LastDesired != nil {
			applied = fmt.Sprintf(" (%s, desired %d)", st.LastAction, *st.LastDesired)
		}
		fmt.Fprintf(w, "last decision %s ago%s: %s\n", st.At.Sub(st.LastDecision).Round(time.Second), applied, st.LastReason)
	}

	t := table.NewWriter()
	t.SetOutputMirror(w)
	t.SetStyle(table.StyleLight)
	t.SetTitle("instances")
	t.AppendHeader(table.Row{"instance", "state", "version", "intake", "jobs", "capacity", "protected", "age", "last scrape"})
	for _, in := range st.Instances {
		scraped := "-"
		switch {
		case in.ScrapeError != "":
			scraped = "failed: " + in.ScrapeError
		case !in.Scraped.IsZero():
			scraped = st.At.Sub(in.Scraped).Round(time.Millisecond).String() + " ago"
		}
		version := orDash(in.Version)
		if in.Template != st.CurrentTemplate && st.CurrentTemplate != "" {
			// Another launch template's version: the same number is not the same launch.
			version = fmt.Sprintf("%s of %s", version, orDash(in.Template))
		}
		t.AppendRow(table.Row{in.ID, in.State, version, in.Intake, count(in.Jobs), count(in.Capacity), yesNo(in.Protected), in.Age, scraped})
	}
	t.Render()

	if len(st.Drains) > 0 {
		t := table.NewWriter()
		t.SetOutputMirror(w)
		t.SetStyle(table.StyleLight)
		t.SetTitle("drains in progress")
		t.AppendHeader(table.Row{"instance", "phase", "jobs", "age", "note"})
		for _, d := range st.Drains {
			t.AppendRow(table.Row{d.InstanceID, d.Phase, count(d.Jobs), d.Age, d.Note})
		}
		t.Render()
	} else {
		fmt.Fprintln(w, "drains in progress: none")
	}

	if c := st.Cycle; c != nil {
		verb := "in progress"
		if c.Status.Final() {
			verb = string(c.Status)
		}
		fmt.Fprintf(w, "cycle %s (%s) %s, started %s ago: %s\n", c.ID, c.Trigger, verb, st.At.Sub(c.StartedAt).Round(time.Second), progressText(c.Progress))
		if c.Reason != "" {
			fmt.Fprintf(w, "  %s\n", c.Reason)
		}
		if c.UndoPending {
			fmt.Fprintf(w, "  the undo of its surge is pending: the cycle holds the desired capacity until it is done (ticks take it up again until %s)\n",
				c.UndoUntil().UTC().Format(time.RFC3339))
		}
		if cl := c.Claim; cl != nil && st.At.Before(cl.Until) {
			fmt.Fprintf(w, "  a step in flight, claimed by %s until %s\n", cl.Owner, cl.Until.UTC().Format(time.RFC3339))
		}
		for _, ev := range c.Events[max(len(c.Events)-5, 0):] {
			fmt.Fprintf(w, "  %s  %s\n", ev.At.UTC().Format("15:04:05"), ev.Text)
		}
	} else {
		fmt.Fprintln(w, "cycle: none")
	}
	if u := st.Update; u != nil {
		state := "in progress (" + u.Phase + ")"
		if u.Finished() {
			state = u.Outcome
		}
		line := fmt.Sprintf("update %s of stack %s: %s, started %s ago", u.CommandID, u.Stack, state, st.At.Sub(u.StartedAt).Round(time.Second))
		if u.Reason != "" {
			line += ": " + u.Reason
		}
		fmt.Fprintln(w, line)
	} else {
		fmt.Fprintln(w, "update: none")
	}
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func count(n int) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprint(n)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
