// Package sim replays a job trace through a scaling policy on a virtual clock: a simulated Auto
// Scaling group of simulated gitlab-runner instances, a FIFO job queue served by any free slot,
// and a scraper that gives the policy only what production would. Our policy runs through the
// same scaling.Decide the worker calls; the AWS sample's policy ("seed") is reproduced for
// comparison. No I/O but the trace reader and writer given to it.
package sim

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Job is one job of a trace.
type Job struct {
	// Arrival is when the job is queued, from the trace's start.
	Arrival time.Duration
	// Duration is how long the job runs once a slot picks it up.
	Duration time.Duration
}

// TraceHeader is the header line of a trace CSV.
const TraceHeader = "arrival_s,duration_s"

// StartComment begins the optional comment line of a trace CSV that gives the wall-clock time
// of its start (RFC 3339), e.g. "# start: 2026-01-10T00:00:00Z".
const StartComment = "# start:"

// ReadTrace reads a CSV trace with the header `arrival_s,duration_s` (seconds from the trace's
// start, decimals allowed) and returns its jobs sorted by arrival. Blank lines and lines starting
// with '#' are skipped, but a StartComment line sets the trace's Start. Every malformed row is
// reported, with its line number.
func ReadTrace(r io.Reader) (Trace, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return Trace{}, fmt.Errorf("reading trace: %w", err)
	}
	var tr Trace
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), StartComment); ok {
			start, err := time.Parse(time.RFC3339, strings.TrimSpace(rest))
			if err != nil {
				return Trace{}, fmt.Errorf("reading trace start: %w", err)
			}
			tr.Start = start
		}
	}
	jobs, err := readJobs(strings.NewReader(string(body)))
	tr.Jobs = jobs
	return tr, err
}

func readJobs(r io.Reader) ([]Job, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading trace header: %w", err)
	}
	if strings.Join(header, ",") != TraceHeader {
		return nil, fmt.Errorf("trace header is %q, want %q", strings.Join(header, ","), TraceHeader)
	}
	var jobs []Job
	var errs []error
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading trace: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != 2 {
			errs = append(errs, fmt.Errorf("line %d: want 2 fields, got %d", line, len(rec)))
			continue
		}
		a, errA := parseSeconds(rec[0])
		d, errD := parseSeconds(rec[1])
		if errA != nil || errD != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, errors.Join(errA, errD)))
			continue
		}
		jobs = append(jobs, Job{Arrival: a, Duration: d})
		if len(errs) > 20 {
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("reading trace: %w", err)
	}
	slices.SortStableFunc(jobs, func(a, b Job) int { return int(a.Arrival - b.Arrival) })
	return jobs, nil
}

func parseSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e9 {
		return 0, fmt.Errorf("%q is not a number of seconds ≥ 0", s)
	}
	return time.Duration(math.Round(f*1000)) * time.Millisecond, nil
}

// WriteTrace writes tr as a trace CSV: its StartComment line when Start is set, the header, and
// one row per job, seconds with millisecond precision.
func WriteTrace(w io.Writer, tr Trace) error {
	bw := bufio.NewWriter(w)
	if !tr.Start.IsZero() {
		fmt.Fprintf(bw, "%s %s\n", StartComment, tr.Start.Format(time.RFC3339))
	}
	fmt.Fprintln(bw, TraceHeader)
	for _, j := range tr.Jobs {
		fmt.Fprintf(bw, "%s,%s\n", seconds(j.Arrival), seconds(j.Duration))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing trace: %w", err)
	}
	return nil
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
