package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// Log event kinds the emulator writes (the runner simulator appends its own: runner.intake,
// job.start, job.end, job.killed, ...; SSM commands add ssm.command).
const (
	// KindInstanceState: an instance changed lifecycle state; fields instance_id, group, from, to
	// (Auto Scaling states: Pending, Pending:Wait, Pending:Proceed, InService, Terminating,
	// Terminating:Wait, Terminating:Proceed, Terminated).
	KindInstanceState = "instance.state"
	// KindEC2State: an EC2 state change notification was emitted; fields instance_id, group, state.
	KindEC2State = "ec2.state"
	// KindHookStart: a lifecycle action began; fields instance_id, group, hook, token, transition.
	KindHookStart = "hook.start"
	// KindHookHeartbeat: RecordLifecycleActionHeartbeat; fields instance_id, token, hook, group.
	KindHookHeartbeat = "hook.heartbeat"
	// KindHookComplete: CompleteLifecycleAction; fields instance_id, token, result, by ("token" or "instance_id").
	KindHookComplete = "hook.complete"
	// KindHookTimeout: an action timed out; fields instance_id, token, result (the DefaultResult), timeout.
	KindHookTimeout = "hook.timeout"
	// KindInstanceJobsKilled: written by the emulator once per terminated instance with the count
	// the simulator's DELETE answered; fields instance_id, killed (a count), reported_by
	// "emulator". (The simulator itself logs one KindJobKilled per killed job.)
	KindInstanceJobsKilled = "instance.jobs_killed"
	// KindJobKilled: written by the runner simulator, one per killed job; fields instance_id, job_id.
	KindJobKilled = "job.killed"
	// KindEventEmitted: an event went onto the default bus; fields detail_type, source, resources, event_id.
	KindEventEmitted = "event.emitted"
	// KindStackStatus: a stack changed status; fields stack_id, stack, status.
	KindStackStatus = "stack.status"
	// KindRunnerSimSlow: a call from the emulator to the runner simulator took a second or more
	// (some hold the emulator's lock meanwhile); fields call, seconds.
	KindRunnerSimSlow = "runnersim.slow"
	// KindFaultInjected: a call failed as a Fault armed it; fields action, when, code, status,
	// instance_id.
	KindFaultInjected = "fault.injected"
)

// LogEvent is one entry of the emulator's ordered transition log.
type LogEvent struct {
	// Seq numbers events from 1 in the order they happened.
	Seq int `json:"seq"`
	// Time is when the emulator recorded it.
	Time time.Time `json:"time"`
	// Kind says what happened (see the Kind constants).
	Kind string `json:"kind"`
	// Fields holds every other field of the event, decoded from JSON.
	Fields map[string]any `json:"-"`
}

// String returns the named field as a string ("" when absent or not a string).
func (ev LogEvent) String(name string) string {
	s, _ := ev.Fields[name].(string)
	return s
}

// Int returns the named numeric field as an int (0 when absent).
func (ev LogEvent) Int(name string) int {
	f, _ := ev.Fields[name].(float64)
	return int(f)
}

// UnmarshalJSON keeps every field beside seq, time and kind in Fields.
func (ev *LogEvent) UnmarshalJSON(b []byte) error {
	type plain LogEvent
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	delete(all, "seq")
	delete(all, "time")
	delete(all, "kind")
	*ev = LogEvent(p)
	ev.Fields = all
	return nil
}

// controlTimeout bounds one call to the emulator's control routes (they answer at once).
const controlTimeout = 10 * time.Second

func (e *Emulator) control(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding %s body: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.Endpoint+path, rd)
	if err != nil {
		return fmt.Errorf("building %s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := netguard.HTTPClient(controlTimeout).Do(req)
	if err != nil {
		return fmt.Errorf("calling emulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading emulator %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("emulator %s %s: HTTP %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decoding emulator %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Log returns the transition log's events with Seq > since, in order. Pass the last Seq seen
// to read only what is new.
func (e *Emulator) Log(ctx context.Context, since int) ([]LogEvent, error) {
	var out struct {
		Events []LogEvent `json:"events"`
	}
	if err := e.control(ctx, http.MethodGet, fmt.Sprintf("/_runnerfleet/log?since=%d", since), nil, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// AppendLog appends one event of kind with fields to the transition log (what the runner
// simulator does for its own transitions) and returns it as recorded.
func (e *Emulator) AppendLog(ctx context.Context, kind string, fields map[string]any) (LogEvent, error) {
	body := map[string]any{}
	for k, v := range fields {
		body[k] = v
	}
	body["kind"] = kind
	var ev LogEvent
	err := e.control(ctx, http.MethodPost, "/_runnerfleet/log", body, &ev)
	return ev, err
}

// SpotInterruption emits an EC2 Spot Instance Interruption Warning for instanceID now and
// terminates the instance after notice (its group launches a replacement).
func (e *Emulator) SpotInterruption(ctx context.Context, instanceID string, notice time.Duration) error {
	return e.control(ctx, http.MethodPost, "/_runnerfleet/spot-interruption",
		map[string]any{"instance_id": instanceID, "notice_seconds": notice.Seconds()}, nil)
}

// Rebalance emits an EC2 Instance Rebalance Recommendation for instanceID.
func (e *Emulator) Rebalance(ctx context.Context, instanceID string) error {
	return e.control(ctx, http.MethodPost, "/_runnerfleet/rebalance", map[string]any{"instance_id": instanceID}, nil)
}

// Fault is a failure of an AWS JSON-protocol call armed with InjectFault: the ways calls fail in
// AWS that the emulator otherwise never shows.
type Fault struct {
	// Action is the API action, as in X-Amz-Target ("SendCommand").
	Action string `json:"action"`
	// After: the emulator serves the call, then answers the error instead (the call took effect
	// and its answer was lost). Otherwise the call is refused before anything is done.
	After bool `json:"-"`
	// Status is the HTTP status of the error answer (400 for throttling, 500 for a service error).
	Status int `json:"status"`
	// Code is the AWS error code ("ThrottlingException", "InternalServerError").
	Code string `json:"code"`
	// InstanceID, when set, limits the fault to calls that name this instance (InstanceIds or
	// InstanceId): tests sharing an emulator do not fail each other's calls.
	InstanceID string `json:"instance_id,omitempty"`
	// Count is how many matching calls fail (0: one).
	Count int `json:"count,omitempty"`
}

// InjectFault arms f: the next f.Count calls it matches fail with its error.
func (e *Emulator) InjectFault(ctx context.Context, f Fault) error {
	when := "before"
	if f.After {
		when = "after"
	}
	if f.Count == 0 {
		f.Count = 1
	}
	body := struct {
		Fault
		When string `json:"when"`
	}{f, when}
	return e.control(ctx, http.MethodPost, "/_runnerfleet/faults", body, nil)
}
