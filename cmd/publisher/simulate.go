package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/scaling"
	"github.com/runnerfleet/runnerfleet/scaling/sim"
)

// Policy names --policy accepts besides a file.
const (
	policySeed    = "seed"
	policyDefault = "default"
)

// simulateOptions are the flags of `publisher simulate`.
type simulateOptions struct {
	trace     string
	policies  []string
	plot      string
	json      bool
	markdown  bool
	generate  string
	seed      uint64
	out       string
	start     string
	cfg       sim.Config
	simSeed   uint64
	queueOff  bool
	scrapeErr float64
}

// newSimulateCmd builds `publisher simulate`: replay a job trace through scaling policies on a
// virtual clock, or generate a trace. It does no AWS call.
func newSimulateCmd() *cobra.Command {
	o := &simulateOptions{}
	cmd := &cobra.Command{
		Use:   "simulate --trace FILE [--policy FILE|seed|default]... [--plot OUT.svg] [--json]",
		Short: "Replay a job trace through a scaling policy, or generate a trace",
		Long: `simulate replays a job trace (CSV with the header arrival_s,duration_s, seconds from the
trace's start) through the scaling package on a virtual clock, with a simulated Auto Scaling group
of simulated runners. The policy sees only what the scraper would return: per-instance running jobs
and capacity, queue size only as of each runner's last job pickup, nothing from booting instances,
and unknown for failed scrapes.

--policy seed is the AWS sample (desired = ceil((running+2)/concurrency), lowered only 600 s after
the last scaling activity ended, as the group's cooldown does: a launch ends in service, a
termination when its instance is gone; oldest removed, jobs killed 3600 s after removal); --policy default is
RunnerFleet's default policy; any other value is a policy YAML file, the same format as a fleet's
policy: block in the worker config (min and max left out are --min and --max). Give --policy more
than once to compare.

It prints, per policy, the queue wait (p50, p95, max, in seconds), instance-hours, scale-actions
(decisions that changed the desired capacity) and killed (jobs).

--generate KIND --seed N writes a generated trace (kinds: ` + strings.Join(sim.Kinds, ", ") + `) to --out or stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.generate != "" {
				return runGenerate(cmd.OutOrStdout(), o)
			}
			return runSimulate(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.trace, "trace", "", "job trace CSV (arrival_s,duration_s)")
	f.StringArrayVar(&o.policies, "policy", nil, "policy YAML file, seed or default (repeatable; default: default)")
	f.StringVar(&o.plot, "plot", "", "write demand, capacity and queue wait over time to this SVG file")
	f.BoolVar(&o.json, "json", false, "print the results as JSON")
	f.BoolVar(&o.markdown, "markdown", false, "print the results as a markdown table")
	f.StringVar(&o.generate, "generate", "", "generate a trace of this kind instead of simulating: "+strings.Join(sim.Kinds, ", "))
	f.Uint64Var(&o.seed, "seed", 1, "seed of --generate")
	f.StringVar(&o.out, "out", "", "file --generate writes (default stdout)")
	f.StringVar(&o.start, "start", "", "wall-clock time of the trace's start, RFC 3339 (default: the trace's '# start:' line, else Monday 2026-01-05T00:00:00Z)")
	f.DurationVar(&o.cfg.Boot, "boot", 180*time.Second, "time from launch to taking jobs")
	f.IntVar(&o.cfg.Concurrency, "concurrency", 4, "job slots per instance")
	f.DurationVar(&o.cfg.Tick, "tick", 60*time.Second, "time between decisions")
	f.IntVar(&o.cfg.Min, "min", 1, "group minimum instances")
	f.IntVar(&o.cfg.Max, "max", 40, "group maximum instances")
	f.DurationVar(&o.cfg.AcceptableQueuing, "acceptable-queuing", 60*time.Second, "runners count jobs that waited longer in the queuing-exceeded counter")
	f.Float64Var(&o.scrapeErr, "scrape-failure", 0, "share of scrapes that fail (instance unknown), 0..1")
	f.BoolVar(&o.queueOff, "no-queue-signals", false, "simulated runners report no queue size/depth or queuing-exceeded counter")
	f.StringVar(&o.cfg.Placement, "placement", sim.PlacementInstance, "which free slot takes a job: instance (each instance with a free slot equally likely, as runners poll) or slot (each free slot)")
	f.Uint64Var(&o.simSeed, "sim-seed", 1, "seed of the simulation's randomness (job placement, scrape failures)")
	return cmd
}

func runGenerate(stdout io.Writer, o *simulateOptions) error {
	tr, err := sim.Generate(o.generate, o.seed)
	if err != nil {
		return err
	}
	if o.out == "" {
		return sim.WriteTrace(stdout, tr)
	}
	var buf bytes.Buffer
	if err := sim.WriteTrace(&buf, tr); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing trace: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %d jobs to %s\n", len(tr.Jobs), o.out)
	return nil
}

// namedResult is one policy's result on one trace.
type namedResult struct {
	Trace string `json:"trace"`
	sim.Result
}

func runSimulate(stdout io.Writer, o *simulateOptions) error {
	if o.trace == "" {
		return errors.New("simulate: --trace FILE is required (or --generate KIND)")
	}
	tr, err := readTraceFile(o.trace)
	if err != nil {
		return err
	}
	cfg := o.cfg
	cfg.Seed, cfg.NoQueueSignals, cfg.ScrapeFailure = o.simSeed, o.queueOff, o.scrapeErr
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	cfg.Start = tr.Start
	if o.start != "" {
		if cfg.Start, err = time.Parse(time.RFC3339, o.start); err != nil {
			return fmt.Errorf("simulate: --start: %w", err)
		}
	}
	names := o.policies
	if len(names) == 0 {
		names = []string{policyDefault}
	}
	var results []namedResult
	for _, name := range names {
		pol, err := loadSimPolicy(name, cfg)
		if err != nil {
			return err
		}
		res, err := sim.Run(cfg, pol, tr.Jobs)
		if err != nil {
			return fmt.Errorf("simulating %s on %s: %w", name, o.trace, err)
		}
		results = append(results, namedResult{Trace: filepath.Base(o.trace), Result: res})
	}
	if o.plot != "" {
		if err := writePlot(o.plot, filepath.Base(o.trace), results); err != nil {
			return err
		}
	}
	switch {
	case o.json:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	case o.markdown:
		printMarkdown(stdout, results)
	default:
		printTable(stdout, results)
	}
	return nil
}

func readTraceFile(path string) (sim.Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return sim.Trace{}, fmt.Errorf("opening trace: %w", err)
	}
	defer f.Close()
	tr, err := sim.ReadTrace(f)
	if err != nil {
		return sim.Trace{}, fmt.Errorf("%s: %w", path, err)
	}
	return tr, nil
}

// loadSimPolicy turns a --policy value into a simulated policy.
func loadSimPolicy(name string, cfg sim.Config) (sim.Policy, error) {
	switch name {
	case policySeed:
		return sim.SeedPolicy(cfg.Concurrency), nil
	case policyDefault:
		pol := sim.OurPolicy(fleet.Policy{})
		pol.Name = policyDefault
		return pol, nil
	}
	p, err := readPolicyFile(name, cfg.Min, cfg.Max)
	if err != nil {
		return sim.Policy{}, err
	}
	pol := sim.OurPolicy(p)
	pol.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	return pol, nil
}

// readPolicyFile reads a policy YAML file: the knobs at the top level (a fleet's policy: block),
// or under a top-level policy: key. It is decoded as the worker's config loader decodes it
// (viper, exact keys, durations like "10m") and validated with scaling.ValidatePolicy; min and
// max left out are taken from the simulated group.
func readPolicyFile(path string, groupMin, groupMax int) (fleet.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return fleet.Policy{}, fmt.Errorf("reading policy: %w", err)
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return fleet.Policy{}, fmt.Errorf("policy %s: not valid YAML: %w", path, err)
	}
	if v.IsSet("policy") {
		v = v.Sub("policy")
	}
	var p fleet.Policy
	if v != nil {
		if err := v.UnmarshalExact(&p); err != nil {
			return fleet.Policy{}, fmt.Errorf("policy %s: %w", path, err)
		}
	}
	check := p
	if check.MinInstances == 0 {
		check.MinInstances = groupMin
	}
	if check.MaxInstances == 0 {
		check.MaxInstances = groupMax
	}
	if err := scaling.ValidatePolicy(check.WithDefaults()); err != nil {
		return fleet.Policy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

func printTable(w io.Writer, results []namedResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "trace\tpolicy\tjobs\tp50\tp95\tmax\tinstance-hours\tscale-actions\tkilled")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\n", r.Trace, r.Policy, r.Jobs, r.P50, r.P95, r.Max, r.InstanceHours, r.ScaleActions, r.Killed)
	}
	tw.Flush()
}

func printMarkdown(w io.Writer, results []namedResult) {
	fmt.Fprintln(w, "| trace | policy | jobs | p50 (s) | p95 (s) | max (s) | instance-hours | scale-actions | killed |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %d | %d |\n", r.Trace, r.Policy, r.Jobs, r.P50, r.P95, r.Max, r.InstanceHours, r.ScaleActions, r.Killed)
	}
}
