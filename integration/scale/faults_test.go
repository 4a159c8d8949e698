package scale_test

import (
	"context"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

// The scraper against the runner simulator's every fault mode: the contract between the two is
// gitlab-runner's exposition, and a faulty runner is unknown (with the right reason), never idle.
func TestScrapeSimulatorFaults(t *testing.T) {
	t.Parallel()
	sim, err := runnersim.New(runnersim.Config{Concurrent: 3, PollInterval: 20 * time.Millisecond, HugeBodyBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })

	faults := []struct {
		mode   string
		reason scrape.Reason
	}{
		{runnersim.FaultNone, scrape.ReasonNone},
		{runnersim.FaultHang, scrape.ReasonTimeout},
		{runnersim.Fault500, scrape.ReasonHTTPStatus},
		{runnersim.FaultGarbage, scrape.ReasonGarbled},
		{runnersim.FaultHuge, scrape.ReasonTooLarge},
		{runnersim.FaultSlow, scrape.ReasonTimeout},
		{runnersim.FaultRejectToken, scrape.ReasonNone},
	}
	var targets []scrape.Target
	for i, f := range faults {
		id := "i-fault" + f.mode
		if err := sim.Register(runnersim.Registration{InstanceID: id, Group: "g", PrivateIP: "10.1.0.1"}); err != nil {
			t.Fatal(err)
		}
		if err := sim.SetFault(id, f.mode); err != nil {
			t.Fatalf("fault %d: %v", i, err)
		}
		targets = append(targets, scrape.Target{InstanceID: id, PrivateIP: "10.1.0.1"})
	}
	s, err := scrape.New(scrape.Config{Timeout: time.Second}, netguard.HTTPClient(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Scrape(ctx, sim.MetricsURLTemplate(), targets); err != nil { // first sample
		t.Fatal(err)
	}
	rejected := targets[len(targets)-1].InstanceID
	deadline := time.Now().Add(waitLimit)
	for { // let the rejected runner's 403s accumulate past its earlier 204s
		st, _ := sim.State().Instance(rejected)
		if st.Requests["403"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("simulator never refused %s: %+v", rejected, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	results, err := s.Scrape(ctx, sim.MetricsURLTemplate(), targets)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range faults {
		r := results[i]
		t.Run(f.mode, func(t *testing.T) {
			if r.Reason != f.reason || r.Known != (f.reason == scrape.ReasonNone) {
				t.Fatalf("known=%v reason=%q (%v), want reason %q", r.Known, r.Reason, r.Err, f.reason)
			}
			switch f.mode {
			case runnersim.FaultNone:
				if r.Capacity != 3 || r.Rejected || r.BusyJobs != 0 {
					t.Errorf("healthy idle runner: %+v", r)
				}
			case runnersim.FaultRejectToken:
				if !r.Rejected || r.Capacity != 0 || r.Instance().Healthy {
					t.Errorf("refused runner still offers capacity: %+v", r)
				}
			}
		})
	}
}
