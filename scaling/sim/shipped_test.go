package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// shipped reads configs/traces/KIND.csv.
func shipped(t *testing.T, kind string) Trace {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "configs", "traces", kind+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ReadTrace(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// responsive is configs/policy-responsive.yaml (the cmd/publisher tests check the file decodes).
var responsive = fleet.Policy{IdleSlots: 4, ScaleFactor: 1, ScaleInWindow: 3 * time.Minute, MaxScaleInStep: 10, MaxUnknownShare: 0.2,
	MinUptime: time.Minute, QueueMaxAge: 3 * time.Minute}

// TestShippedTracesDefaultVersusSeed runs the default policy and the AWS sample's on every
// shipped trace. What it asserts is what the default achieves: no job killed, no more
// instance-hours than the sample, and at most 60 % of its p95 queue wait. The goal (p95
// at most 30 % of the sample's at no more instance-hours) is met by no setting of this policy on
// the week trace, nor by any reactive policy we tried, even one fed the true queue at every tick
// (see TestOracleOnTheWeek for what foresight buys): the responsive policy reaches the 30 % at
// about 1.36 × the instance-hours, which the second half asserts.
func TestShippedTracesDefaultVersusSeed(t *testing.T) {
	t.Parallel()
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			tr := shipped(t, kind)
			cfg := Config{Start: tr.Start}
			seed, err := Run(cfg, SeedPolicy(4), tr.Jobs)
			if err != nil {
				t.Fatal(err)
			}
			def, err := Run(cfg, OurPolicy(fleet.Policy{}), tr.Jobs)
			if err != nil {
				t.Fatal(err)
			}
			fast, err := Run(cfg, OurPolicy(responsive), tr.Jobs)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("seed: p95 %.0f s, %.1f instance-hours; default: p95 %.0f s (%.2f), %.1f instance-hours (%.2f); responsive: p95 %.0f s (%.2f), %.1f instance-hours (%.2f)",
				seed.P95, seed.InstanceHours, def.P95, def.P95/seed.P95, def.InstanceHours, def.InstanceHours/seed.InstanceHours,
				fast.P95, fast.P95/seed.P95, fast.InstanceHours, fast.InstanceHours/seed.InstanceHours)
			if def.Killed != 0 || fast.Killed != 0 {
				t.Errorf("jobs killed: default %d, responsive %d; want 0", def.Killed, fast.Killed)
			}
			if def.InstanceHours > seed.InstanceHours {
				t.Errorf("default: %.1f instance-hours, more than the sample's %.1f", def.InstanceHours, seed.InstanceHours)
			}
			if def.P95 > 0.6*seed.P95 && !(def.P95 <= 10 && seed.P95 <= 10) {
				t.Errorf("default: p95 %.0f s, above 60 %% of the sample's %.0f s", def.P95, seed.P95)
			}
			if fast.P95 > 0.3*seed.P95 && !(fast.P95 <= 10 && seed.P95 <= 10) {
				t.Errorf("responsive: p95 %.0f s, above 30 %% of the sample's %.0f s", fast.P95, seed.P95)
			}
			if fast.InstanceHours > 1.4*seed.InstanceHours {
				t.Errorf("responsive: %.1f instance-hours, above 1.4 × the sample's %.1f", fast.InstanceHours, seed.InstanceHours)
			}
		})
	}
}
