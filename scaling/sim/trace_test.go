package sim

import (
	"strings"
	"testing"
	"time"
)

func TestReadTrace(t *testing.T) {
	t.Parallel()
	tr, err := ReadTrace(strings.NewReader("# start: 2026-01-10T08:00:00Z\narrival_s,duration_s\n10,5.5\n\n# a comment\n2, 60\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Start.Equal(time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("Start = %v", tr.Start)
	}
	want := []Job{{2 * time.Second, time.Minute}, {10 * time.Second, 5500 * time.Millisecond}}
	if len(tr.Jobs) != 2 || tr.Jobs[0] != want[0] || tr.Jobs[1] != want[1] {
		t.Errorf("Jobs = %v, want %v (sorted by arrival)", tr.Jobs, want)
	}
}

func TestReadTraceRejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ in, want string }{
		"header":   {"a,b\n1,2\n", "trace header"},
		"fields":   {"arrival_s,duration_s\n1,2,3\n", "line 2: want 2 fields"},
		"negative": {"arrival_s,duration_s\n-1,2\nx,1\n", `line 2: "-1"`},
		"every":    {"arrival_s,duration_s\n-1,2\nx,1\n", `line 3: "x"`},
		"nan":      {"arrival_s,duration_s\n1,NaN\n", `"NaN"`},
		"start":    {"# start: yesterday\narrival_s,duration_s\n", "trace start"},
		"empty":    {"", "trace header"},
	} {
		_, err := ReadTrace(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", name, err, tc.want)
		}
	}
}
