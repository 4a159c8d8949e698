package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// simulateCLI runs `publisher simulate` with args and returns what it printed.
func simulateCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newSimulateCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	err := cmd.Execute()
	return out.String(), err
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// burstTrace: 12 jobs of 10 minutes at once, then a few stragglers.
const burstTrace = "arrival_s,duration_s\n" +
	"0,600\n0,600\n0,600\n0,600\n0,600\n0,600\n0,600\n0,600\n0,600\n0,600\n0,600\n0,600\n" +
	"1800,60\n3600,120\n"

func TestSimulatePrintsNamedFigures(t *testing.T) {
	t.Parallel()
	trace := writeFile(t, "burst.csv", burstTrace)
	out, err := simulateCLI(t, "--trace", trace, "--policy", "seed", "--policy", "default")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows, got:\n%s", out)
	}
	header := strings.Fields(lines[0])
	for _, name := range []string{"p50", "p95", "max", "instance-hours", "scale-actions", "killed"} {
		found := false
		for _, h := range header {
			found = found || h == name
		}
		if !found {
			t.Errorf("header %v lacks %q", header, name)
		}
	}
	if !strings.Contains(lines[1], "seed") || !strings.Contains(lines[2], "default") {
		t.Errorf("rows are not seed then default:\n%s", out)
	}
}

func TestSimulateJSON(t *testing.T) {
	t.Parallel()
	trace := writeFile(t, "burst.csv", burstTrace)
	out, err := simulateCLI(t, "--trace", trace, "--policy", "seed", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(got) != 1 {
		t.Fatalf("want one result, got %d", len(got))
	}
	for _, k := range []string{"trace", "policy", "jobs", "p50", "p95", "max", "instance-hours", "scale-actions", "killed"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("JSON lacks %q: %v", k, got[0])
		}
	}
	if got[0]["jobs"].(float64) != 14 || got[0]["policy"] != "seed" {
		t.Errorf("result = %v, want 14 jobs of policy seed", got[0])
	}
}

func TestSimulatePlotWritesValidSVG(t *testing.T) {
	t.Parallel()
	trace := writeFile(t, "burst.csv", burstTrace)
	svg := filepath.Join(t.TempDir(), "out.svg")
	if _, err := simulateCLI(t, "--trace", trace, "--policy", "seed", "--policy", "default", "--plot", svg); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(svg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	var root string
	elements := map[string]int{}
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("invalid XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
			elements[tok.Name.Local]++
		case xml.CharData:
			text.Write(tok)
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	if elements["path"] < 5 || elements["text"] < 10 {
		t.Errorf("too few paths or texts for two panels with axes: %v", elements)
	}
	for _, want := range []string{"Demand and capacity", "Queue wait", "capacity, seed", "capacity, default", "time of day", "00:00"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("SVG text lacks %q", want)
		}
	}
}

func TestSimulatePolicyFile(t *testing.T) {
	t.Parallel()
	trace := writeFile(t, "burst.csv", burstTrace)
	for name, body := range map[string]string{
		"block":   "idle_slots: 4\nscale_in_window: 2m\nschedules:\n  - periods: ['* 8-17 * * mon-fri']\n    timezone: Europe/Berlin\n    min: 2\n",
		"wrapped": "policy:\n  idle_slots: 4\n  scale_in_window: 2m\n",
	} {
		path := writeFile(t, name+".yaml", body)
		out, err := simulateCLI(t, "--trace", trace, "--policy", path, "--json")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0]["policy"] != name {
			t.Errorf("%s: got %s (%v)", name, out, err)
		}
	}
	bad := writeFile(t, "bad.yaml", "idle_slots: -1\nmax_scale_in_step: -2\nschedules: [{periods: ['nope']}]\nsurprise: 1\n")
	_, err := simulateCLI(t, "--trace", trace, "--policy", bad)
	if err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("unknown key accepted: %v", err)
	}
	bad = writeFile(t, "bad.yaml", "idle_slots: -1\nmax_scale_in_step: -2\nschedules: [{periods: ['nope']}]\n")
	_, err = simulateCLI(t, "--trace", trace, "--policy", bad)
	for _, want := range []string{"idle_slots", "max_scale_in_step", `"nope"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestSimulateShippedPolicyFileIsTheDefault(t *testing.T) {
	t.Parallel()
	trace := filepath.Join("..", "..", "configs", "traces", "weekend.csv")
	out, err := simulateCLI(t, "--trace", trace, "--policy", "default", "--policy", filepath.Join("..", "..", "configs", "policy.yaml"), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 {
		t.Fatalf("got %s (%v)", out, err)
	}
	for _, k := range []string{"p50", "p95", "max", "instance-hours", "scale-actions", "killed"} {
		if got[0][k] != got[1][k] {
			t.Errorf("%s: default %v, configs/policy.yaml %v: the shipped file is not the default", k, got[0][k], got[1][k])
		}
	}
}

func TestSimulateGenerateWritesTheShippedTraces(t *testing.T) {
	t.Parallel()
	out, err := simulateCLI(t, "--generate", "spike", "--seed", "1")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "configs", "traces", "spike.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Error("publisher simulate --generate spike --seed 1 differs from configs/traces/spike.csv")
	}
	if _, err := simulateCLI(t, "--generate", "holiday"); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestSimulateRefusesBadInput(t *testing.T) {
	t.Parallel()
	if _, err := simulateCLI(t); err == nil || !strings.Contains(err.Error(), "--trace") {
		t.Errorf("no trace: err = %v", err)
	}
	bad := writeFile(t, "bad.csv", "arrival,duration\n1,2\n")
	if _, err := simulateCLI(t, "--trace", bad); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("bad header: err = %v", err)
	}
	trace := writeFile(t, "burst.csv", burstTrace)
	if _, err := simulateCLI(t, "--trace", trace, "--concurrency", "-1"); err == nil || !strings.Contains(err.Error(), "concurrency") {
		t.Errorf("concurrency 0: err = %v", err)
	}
}

func TestSimulateShippedResponsivePolicyDecodes(t *testing.T) {
	t.Parallel()
	p, err := readPolicyFile(filepath.Join("..", "..", "configs", "policy-responsive.yaml"), 1, 40)
	if err != nil {
		t.Fatal(err)
	}
	// scaling/sim's shipped-trace test simulates these values as the responsive policy.
	want := fleet.Policy{IdleSlots: 4, ScaleFactor: 1, ScaleInWindow: 3 * time.Minute, MaxScaleInStep: 10,
		MinUptime: time.Minute, MaxUnknownShare: 0.2, QueueMaxAge: 3 * time.Minute}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("configs/policy-responsive.yaml = %+v, want %+v", p, want)
	}
}
