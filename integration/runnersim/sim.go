// Package runnersim simulates the gitlab-runner processes of a runner fleet, for tests, the demo
// and `make emulator`.
//
// The AWS emulator registers every EC2 instance it launches (POST /instances) and removes it on
// termination (DELETE /instances/{id}, which kills and counts the instance's remaining jobs). Each
// registered instance behaves like one gitlab-runner service: it polls one shared FIFO job queue
// (fed by POST /jobs) at Config.PollInterval while its intake is open and it has free slots, runs
// each job for the job's duration, and serves Prometheus metrics with gitlab-runner's own names
// and labels at GET /instances/{id}/metrics. The three drain actions of the SSM documents
// (stop-intake, status, unregister) answer as the documents' shell would, and faults can be
// injected per instance. Every transition (intake open/closed, job start/end/kill) is posted to
// the emulator's ordered log when an emulator URL is set.
//
// The simulator listens on loopback only and connects only to a loopback emulator.
package runnersim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Sim is a running simulator. Its methods are safe for concurrent use; the HTTP API calls the
// same methods.
type Sim struct {
	cfg    Config
	logger *slog.Logger
	events *emitter

	mu        sync.Mutex
	queue     []queuedJob
	instances map[string]*instance
	jobs      map[string]*JobState
	nextJob   int
	arrivals  map[string]*time.Timer // jobs not arrived yet
	closed    bool

	listener net.Listener
	server   *http.Server
	done     chan struct{} // closed by Close: ends hung requests and poll loops
	wg       sync.WaitGroup
}

// New checks cfg and builds a simulator; Start makes it listen.
func New(cfg Config) (*Sim, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("runner simulator config: %w", err)
	}
	s := &Sim{
		cfg:       cfg,
		logger:    cfg.Logger.With("component", "runnersim"),
		instances: map[string]*instance{},
		jobs:      map[string]*JobState{},
		arrivals:  map[string]*time.Timer{},
		done:      make(chan struct{}),
	}
	s.events = newEmitter(cfg.EmulatorURL, s.logger)
	return s, nil
}

// Start listens on Config.Addr and serves the HTTP API until Close. It fails when the address is
// taken.
func (s *Sim) Start() error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("runner simulator listening on %s: %w", s.cfg.Addr, err)
	}
	s.listener = l
	s.server = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.events.start()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("serving", "err", err)
		}
	}()
	s.logger.Info("listening", "url", s.URL())
	return nil
}

// URL is the base URL, e.g. http://127.0.0.1:9252 (empty before Start).
func (s *Sim) URL() string {
	if s.listener == nil {
		return ""
	}
	return "http://" + s.listener.Addr().String()
}

// MetricsURLTemplate is the fleet metrics URL template that points at this simulator.
func (s *Sim) MetricsURLTemplate() string {
	return s.URL() + "/instances/{{.InstanceID}}/metrics"
}

// SetEmulatorURL sets (or, with "", clears) the emulator whose log receives transitions. It must
// be a loopback URL.
func (s *Sim) SetEmulatorURL(u string) error {
	if u != "" {
		if err := checkLoopbackURL(u); err != nil {
			return fmt.Errorf("emulator url: %w", err)
		}
	}
	s.events.setURL(u)
	return nil
}

// Close stops the poll loops, the job timers, hung requests and the server. Running jobs are
// dropped without being counted as killed (the world ends, no instance was terminated).
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for _, t := range s.arrivals {
		t.Stop()
	}
	for _, in := range s.instances {
		stopInstance(in)
		for _, j := range in.running {
			j.timer.Stop()
		}
	}
	s.mu.Unlock()
	var err error
	if s.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if e := s.server.Shutdown(ctx); e != nil {
			err = fmt.Errorf("shutting down the runner simulator: %w", e)
			_ = s.server.Close()
		}
	}
	s.events.close()
	s.wg.Wait()
	return err
}

func stopInstance(in *instance) {
	select {
	case <-in.stop:
	default:
		close(in.stop)
	}
}

// Register adds an instance (idempotent: registering a known instance changes nothing) and starts
// its runner, intake open.
func (s *Sim) Register(reg Registration) error {
	if reg.InstanceID == "" {
		return errors.New("registering an instance: instance_id is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("registering an instance: the simulator is closed")
	}
	if _, ok := s.instances[reg.InstanceID]; ok {
		return nil
	}
	in := newInstance(reg, s.cfg.Concurrent)
	s.instances[reg.InstanceID] = in
	s.logger.Info("instance registered", "instance_id", reg.InstanceID, "group", reg.Group)
	s.events.emit("runner.intake", map[string]any{"instance_id": reg.InstanceID, "open": true})
	s.wg.Add(1)
	go s.pollLoop(in)
	return nil
}

// Terminate ends an instance as EC2 termination does: its remaining jobs are killed and counted.
// It returns how many were killed (0 for an instance already terminated).
func (s *Sim) Terminate(id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return 0, fmt.Errorf("terminating %s: %w", id, errNotFound)
	}
	if in.process == ProcessTerminated {
		return 0, nil
	}
	stopInstance(in)
	killed := 0
	for _, jid := range in.runningIDs() {
		j := in.running[jid]
		j.timer.Stop()
		delete(in.running, jid)
		in.killed++
		killed++
		if js := s.jobs[jid]; js != nil {
			js.State = JobKilled
			js.EndedAt = time.Now()
		}
		s.events.emit("job.killed", map[string]any{"instance_id": id, "job_id": jid})
	}
	if in.intakeOpen {
		in.intakeOpen = false
		s.events.emit("runner.intake", map[string]any{"instance_id": id, "open": false})
	}
	in.process = ProcessTerminated
	s.logger.Info("instance terminated", "instance_id", id, "killed", killed)
	return killed, nil
}

// AddJobs appends jobs to the shared FIFO queue (each after its ArriveAfterMS) and returns
// their IDs (generated where empty).
func (s *Sim) AddJobs(jobs []Job) ([]string, error) {
	var errs []error
	for i, j := range jobs {
		if j.DurationMS < 0 {
			errs = append(errs, fmt.Errorf("job %d (%q): duration_ms must not be negative", i, j.ID))
		}
		if j.ArriveAfterMS < 0 {
			errs = append(errs, fmt.Errorf("job %d (%q): arrive_after_ms must not be negative", i, j.ID))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("queueing jobs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	ids := make([]string, 0, len(jobs))
	for _, j := range jobs {
		id := j.ID
		if id == "" {
			s.nextJob++
			id = fmt.Sprintf("job-%d", s.nextJob)
		}
		if _, dup := s.jobs[id]; dup {
			return ids, fmt.Errorf("queueing jobs: job %q is already known", id)
		}
		q := queuedJob{id: id, duration: time.Duration(j.DurationMS) * time.Millisecond, queuedAt: now}
		js := &JobState{ID: id, State: JobQueued, DurationMS: j.DurationMS, QueuedAt: now}
		s.jobs[id] = js
		ids = append(ids, id)
		if j.ArriveAfterMS > 0 {
			js.State = JobScheduled
			s.arrivals[id] = time.AfterFunc(time.Duration(j.ArriveAfterMS)*time.Millisecond, func() { s.arrive(q) })
			continue
		}
		s.queue = append(s.queue, q)
	}
	return ids, nil
}

// arrive queues a scheduled job at its arrival time.
func (s *Sim) arrive(q queuedJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	delete(s.arrivals, q.id)
	q.queuedAt = time.Now()
	s.queue = append(s.queue, q)
	if js := s.jobs[q.id]; js != nil {
		js.State = JobQueued
		js.QueuedAt = q.queuedAt
	}
}

// SetFault sets an instance's fault mode (FaultNone clears it).
func (s *Sim) SetFault(id, mode string) error {
	if !faultModes[mode] {
		return fmt.Errorf("setting a fault on %s: unknown mode %q (none|hang|500|garbage|huge|slow|reject-token|hang-actions)", id, mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("setting a fault on %s: %w", id, errNotFound)
	}
	in.fault = mode
	s.logger.Info("fault set", "instance_id", id, "mode", mode)
	return nil
}

// Action runs one drain action on an instance, as its SSM document would on the host, and waits
// until the transitions it caused reached the emulator's log (so the log orders them before the
// command's own completion). Under FaultHangActions it blocks until ctx ends or the simulator
// closes, and returns ctx's error.
func (s *Sim) Action(ctx context.Context, id, action string) (ActionResult, error) {
	if !validAction(action) {
		return ActionResult{}, fmt.Errorf("running %q on %s: unknown action (stop-intake|status|unregister)", action, id)
	}
	s.mu.Lock()
	in, ok := s.instances[id]
	if !ok || in.process == ProcessTerminated {
		s.mu.Unlock()
		return ActionResult{}, fmt.Errorf("running %s on %s: %w", action, id, errNotFound)
	}
	if in.fault == FaultHangActions {
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ActionResult{}, fmt.Errorf("running %s on %s: %w", action, id, ctx.Err())
		case <-s.done:
			return ActionResult{}, fmt.Errorf("running %s on %s: the simulator closed", action, id)
		}
	}
	var res ActionResult
	var flush <-chan struct{}
	switch action {
	case ActionStopIntake:
		res, flush = s.stopIntakeLocked(in)
	case ActionStatus:
		b, _ := json.Marshal(in.statusReport())
		res = ActionResult{Stdout: string(b) + "\n"}
	case ActionUnregister:
		res = unregisterLocked(in)
	}
	s.mu.Unlock()
	if flush != nil {
		select {
		case <-flush:
		case <-time.After(eventTimeout):
		}
	}
	s.logger.Info("action", "instance_id", id, "action", action, "exit_code", res.ExitCode)
	return res, nil
}

// stopIntakeLocked is `systemctl stop --no-block gitlab-runner` with the drop-in that makes stop
// send SIGQUIT: it returns at once; running jobs finish, no new job starts, and the process exits
// when the last job ends (at once when none runs). Repeating it changes nothing.
func (s *Sim) stopIntakeLocked(in *instance) (ActionResult, <-chan struct{}) {
	var flush <-chan struct{}
	if in.intakeOpen {
		in.intakeOpen = false
		flush = s.events.emit("runner.intake", map[string]any{"instance_id": in.reg.InstanceID, "open": false})
	}
	if in.process == ProcessRunning {
		in.process = ProcessStopping
	}
	s.exitIfDoneLocked(in)
	return ActionResult{Stdout: fmt.Sprintf("gitlab-runner: stop requested (SIGQUIT); %d job(s) still running\n", len(in.running))}, flush
}

// unregisterLocked is `gitlab-runner unregister` after a check that the service has stopped:
// refused while the process still runs; with a rejected token GitLab answers 403.
func unregisterLocked(in *instance) ActionResult {
	switch {
	case in.alive():
		return ActionResult{ExitCode: 1, Stderr: fmt.Sprintf("gitlab-runner is still %s with %d job(s): refusing to unregister before it stops\n", in.process, len(in.running))}
	case in.fault == FaultRejectToken:
		return ActionResult{ExitCode: 1, Stderr: "ERROR: Unregistering runner... forbidden (check registration token)  status=DELETE https://gitlab.example.com/api/v4/runners: 403 Forbidden\n"}
	case in.unregistered:
		return ActionResult{Stdout: "Runner already unregistered; nothing to do\n"}
	}
	in.unregistered = true
	return ActionResult{Stdout: "Unregistering runner from GitLab succeeded\n"}
}

func (s *Sim) exitIfDoneLocked(in *instance) {
	if in.process == ProcessStopping && len(in.running) == 0 {
		in.process = ProcessExited
		stopInstance(in)
		s.logger.Info("runner exited", "instance_id", in.reg.InstanceID)
	}
}

// pollLoop asks for jobs at every poll interval until the instance stops taking jobs.
func (s *Sim) pollLoop(in *instance) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.poll(in)
		select {
		case <-in.stop:
			return
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// poll makes job requests while the runner has free slots, as gitlab-runner's workers do: each
// request is counted by status (201 job given, 204 none, 403 token rejected), and a picked-up job
// updates the queue gauges (the only moment gitlab-runner updates them).
func (s *Sim) poll(in *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !in.intakeOpen || in.process != ProcessRunning {
		return
	}
	if in.fault == FaultRejectToken {
		in.requestStatuses[http.StatusForbidden]++
		return
	}
	for len(in.running) < in.concurrent {
		if len(s.queue) == 0 {
			in.requestStatuses[http.StatusNoContent]++
			return
		}
		size := len(s.queue)
		q := s.queue[0]
		s.queue = s.queue[1:]
		in.requestStatuses[http.StatusCreated]++
		now := time.Now()
		in.pickedUp = true
		in.queueSize = float64(size)
		in.queueDepth = 1 // every simulated runner matches the first job of the FIFO queue
		if s.cfg.AcceptableQueuing > 0 && now.Sub(q.queuedAt) > s.cfg.AcceptableQueuing {
			in.queuingExceeded++
		}
		id := in.reg.InstanceID
		jid := q.id
		in.running[jid] = &runningJob{id: jid, startedAt: now, timer: time.AfterFunc(q.duration, func() { s.finish(id, jid) })}
		in.started++
		if js := s.jobs[jid]; js != nil {
			js.State = JobRunning
			js.InstanceID = id
			js.StartedAt = now
		}
		s.events.emit("job.start", map[string]any{"instance_id": id, "job_id": jid})
	}
}

// finish ends a job that ran its duration.
func (s *Sim) finish(id, jid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	in, ok := s.instances[id]
	if !ok {
		return
	}
	if _, ok := in.running[jid]; !ok {
		return // killed meanwhile
	}
	delete(in.running, jid)
	in.finished++
	if js := s.jobs[jid]; js != nil {
		js.State = JobFinished
		js.EndedAt = time.Now()
	}
	s.events.emit("job.end", map[string]any{"instance_id": id, "job_id": jid})
	s.exitIfDoneLocked(in)
}

// State is the simulator's whole state, for tests (GET /state).
type State struct {
	// Queued lists the IDs of jobs waiting in the shared queue, oldest first.
	Queued []string `json:"queued"`
	// Instances lists every instance ever registered, by instance ID.
	Instances []InstanceState `json:"instances"`
	// Jobs holds every job ever queued, by ID.
	Jobs map[string]JobState `json:"jobs"`
	// Totals sums over instances.
	Totals Totals `json:"totals"`
}

// InstanceState is one instance in State.
type InstanceState struct {
	InstanceID            string `json:"instance_id"`
	Group                 string `json:"group"`
	PrivateIP             string `json:"private_ip"`
	LaunchTemplateVersion string `json:"launch_template_version"`
	Concurrent            int    `json:"concurrent"`
	// Process is running, stopping, exited or terminated.
	Process      string   `json:"process"`
	IntakeOpen   bool     `json:"intake_open"`
	Fault        string   `json:"fault"`
	Unregistered bool     `json:"unregistered"`
	Running      []string `json:"running"`
	Started      int      `json:"started"`
	Finished     int      `json:"finished"`
	Killed       int      `json:"killed"`
	// Requests counts job requests by HTTP status.
	Requests map[string]int `json:"requests"`
}

// JobState is one job in State.
type JobState struct {
	ID         string    `json:"id"`
	State      string    `json:"state"`
	InstanceID string    `json:"instance_id,omitempty"`
	DurationMS int64     `json:"duration_ms"`
	QueuedAt   time.Time `json:"queued_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
}

// Totals sums jobs over all instances.
type Totals struct {
	// Scheduled counts jobs that have not arrived yet.
	Scheduled int `json:"scheduled"`
	Queued    int `json:"queued"`
	Running   int `json:"running"`
	Started   int `json:"started"`
	Finished  int `json:"finished"`
	Killed    int `json:"killed"`
}

// Instance returns one instance's state.
func (st State) Instance(id string) (InstanceState, bool) {
	for _, in := range st.Instances {
		if in.InstanceID == id {
			return in, true
		}
	}
	return InstanceState{}, false
}

// Instances returns the state of every instance, without the jobs (GET /instances).
func (s *Sim) Instances() []InstanceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.instanceStatesLocked()
}

// State returns a snapshot of the simulator.
func (s *Sim) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Queued: make([]string, 0, len(s.queue)), Jobs: make(map[string]JobState, len(s.jobs))}
	for _, q := range s.queue {
		st.Queued = append(st.Queued, q.id)
	}
	for id, j := range s.jobs {
		st.Jobs[id] = *j
	}
	st.Instances = s.instanceStatesLocked()
	for _, in := range s.instances {
		st.Totals.Running += len(in.running)
		st.Totals.Started += in.started
		st.Totals.Finished += in.finished
		st.Totals.Killed += in.killed
	}
	st.Totals.Queued = len(s.queue)
	st.Totals.Scheduled = len(s.arrivals)
	return st
}

// instanceStatesLocked lists the instances by ID.
func (s *Sim) instanceStatesLocked() []InstanceState {
	out := make([]InstanceState, 0, len(s.instances))
	for _, in := range s.instances {
		req := map[string]int{}
		for code, n := range in.requestStatuses {
			req[fmt.Sprint(code)] = int(n)
		}
		out = append(out, InstanceState{
			InstanceID:            in.reg.InstanceID,
			Group:                 in.reg.Group,
			PrivateIP:             in.reg.PrivateIP,
			LaunchTemplateVersion: string(in.reg.LaunchTemplateVersion),
			Concurrent:            in.concurrent,
			Process:               in.process,
			IntakeOpen:            in.intakeOpen,
			Fault:                 in.fault,
			Unregistered:          in.unregistered,
			Running:               in.runningIDs(),
			Started:               in.started,
			Finished:              in.finished,
			Killed:                in.killed,
			Requests:              req,
		})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].InstanceID < out[b].InstanceID })
	return out
}
