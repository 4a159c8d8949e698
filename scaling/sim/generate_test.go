package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestGenerateIsSeeded(t *testing.T) {
	t.Parallel()
	for _, kind := range Kinds {
		a, err := Generate(kind, 7)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Generate(kind, 7)
		c, _ := Generate(kind, 8)
		if !slices.Equal(a.Jobs, b.Jobs) {
			t.Errorf("%s: same seed, different traces", kind)
		}
		if slices.Equal(a.Jobs, c.Jobs) {
			t.Errorf("%s: different seeds, same trace", kind)
		}
		if !slices.IsSortedFunc(a.Jobs, func(x, y Job) int { return int(x.Arrival - y.Arrival) }) {
			t.Errorf("%s: jobs not sorted by arrival", kind)
		}
	}
	if _, err := Generate("nope", 1); err == nil {
		t.Error("unknown kind accepted")
	}
}

// TestGenerateShapes checks each kind has the shape it claims.
func TestGenerateShapes(t *testing.T) {
	t.Parallel()
	week, _ := Generate(KindWeek, 1)
	perDay := make([]int, 7)
	for _, j := range week.Jobs {
		perDay[int(j.Arrival/(24*time.Hour))]++
	}
	for d := range 5 {
		if perDay[d] < 5*perDay[5] || perDay[d] < 5*perDay[6] {
			t.Errorf("week: weekday %d has %d jobs, weekend %v: not a working week", d, perDay[d], perDay[5:])
		}
	}
	if week.Start.Weekday() != time.Monday {
		t.Errorf("week starts on %s", week.Start.Weekday())
	}
	weekend, _ := Generate(KindWeekend, 1)
	if weekend.Start.Weekday() != time.Saturday || len(weekend.Jobs) > perDay[0]/4 {
		t.Errorf("weekend: starts %s with %d jobs: not a quiet weekend", weekend.Start.Weekday(), len(weekend.Jobs))
	}
	spike, _ := Generate(KindSpike, 1)
	inWindow := 0
	for _, j := range spike.Jobs {
		if j.Arrival >= 10*time.Hour+30*time.Minute && j.Arrival <= 10*time.Hour+32*time.Minute {
			inWindow++
		}
	}
	if inWindow < 300 {
		t.Errorf("spike: %d jobs in the two spike minutes, want ≥ 300", inWindow)
	}
}

// TestShippedTracesAreGenerated pins configs/traces to the generator: each file is what
// `publisher simulate --generate KIND --seed 1` writes.
func TestShippedTracesAreGenerated(t *testing.T) {
	t.Parallel()
	for _, kind := range Kinds {
		tr, err := Generate(kind, 1)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := WriteTrace(&want, tr); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "..", "configs", "traces", kind+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("configs/traces/%s.csv differs from Generate(%q, 1)", kind, kind)
		}
		back, err := ReadTrace(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if !slices.Equal(back.Jobs, tr.Jobs) || !back.Start.Equal(tr.Start) {
			t.Errorf("%s: reading the written trace does not give it back", kind)
		}
	}
}
