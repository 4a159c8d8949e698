package sim

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzReadTrace: any input either fails with an error or gives jobs sorted by arrival, none
// negative, that write and read back the same.
func FuzzReadTrace(f *testing.F) {
	f.Add([]byte("arrival_s,duration_s\n0,1\n2.5,60\n"))
	f.Add([]byte("# start: 2026-01-10T00:00:00Z\narrival_s,duration_s\n"))
	f.Add([]byte("arrival_s,duration_s\n\"1\",2\n1e3,0.001\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		tr, err := ReadTrace(bytes.NewReader(body))
		if err != nil {
			return
		}
		if !slices.IsSortedFunc(tr.Jobs, func(a, b Job) int { return int(a.Arrival - b.Arrival) }) {
			t.Fatal("jobs not sorted")
		}
		for _, j := range tr.Jobs {
			if j.Arrival < 0 || j.Duration < 0 {
				t.Fatalf("negative job %+v", j)
			}
		}
		var buf bytes.Buffer
		if err := WriteTrace(&buf, tr); err != nil {
			t.Fatal(err)
		}
		back, err := ReadTrace(&buf)
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		if !slices.Equal(back.Jobs, tr.Jobs) || !back.Start.Equal(tr.Start) {
			t.Fatal("write then read changed the trace")
		}
	})
}
