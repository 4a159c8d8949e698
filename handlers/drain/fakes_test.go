package drain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// fakeStore is a race-safe in-memory state table with the same conditional semantics.
type fakeStore struct {
	mu    sync.Mutex
	items map[string]storedItem
	// failSaves makes the next n saves fail with an error.
	failSaves int
	// slowNext makes the next save take this long (real time), as a throttled write retried by
	// the SDK does.
	slowNext time.Duration
}

type storedItem struct {
	body     []byte
	version  int64
	due      time.Time
	finished bool
}

func newFakeStore() *fakeStore { return &fakeStore{items: map[string]storedItem{}} }

func (s *fakeStore) Load(_ context.Context, pk, sk string) ([]byte, int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[pk+"|"+sk]
	if !ok {
		return nil, 0, false, nil
	}
	return bytes.Clone(it.body), it.version, true, nil
}

func (s *fakeStore) Save(_ context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error) {
	s.mu.Lock()
	if d := s.slowNext; d > 0 {
		s.slowNext = 0
		s.mu.Unlock()
		time.Sleep(d)
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.failSaves > 0 {
		s.failSaves--
		return false, errors.New("fake store: injected failure")
	}
	k := pk + "|" + sk
	it, ok := s.items[k]
	if (version == 0 && ok) || (version > 0 && (!ok || it.version != version)) {
		return false, nil
	}
	s.items[k] = storedItem{body: bytes.Clone(body), version: version + 1, due: due, finished: !expires.IsZero()}
	return true, nil
}

func (s *fakeStore) Unfinished(_ context.Context, prefix string) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for k, it := range s.items {
		if strings.HasPrefix(k, prefix) && !it.finished {
			out = append(out, bytes.Clone(it.body))
		}
	}
	return out, nil
}

func (s *fakeStore) version(token string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[partitionKey(token)+"|"+sortKey].version
}

// fakeWorld is the instance side: jobs, SSM, the group's hook. One lock guards it all so
// invariants (no completion while jobs run) are checked atomically.
type fakeWorld struct {
	mu  sync.Mutex
	now time.Time

	hookHeartbeat time.Duration
	// hookHeartbeats overrides hookHeartbeat for the hooks it names.
	hookHeartbeats map[string]time.Duration
	hookNames      []string
	launchHooks    []string // the group's launch hooks (none unless a test sets them)
	hookErr        error
	noGroup        bool            // the group does not exist
	missingDocs    map[string]bool // SSM documents that do not exist

	// instance state
	jobs       map[string]int
	metricsErr map[string]error
	groupState map[string]string // absent: gone
	managed    map[string]bool
	exited     map[string]bool

	// SSM
	sends    []sentCommand
	failDocs map[string]int   // document → how many sends fail (status Failed); -1 forever
	sendErr  map[string]error // document → Send error
	// lostAnswers: the next n Sends of a document reach SSM (the command is taken) but their
	// answer is lost (the caller gets an error), as with a timeout after SSM took the call.
	lostAnswers   map[string]int
	findErr       error                  // Find fails with it
	finds         int                    // Find calls
	afterSend     func(document string)  // runs after each successful Send (under mu)
	afterComplete func()                 // runs after each successful Complete (under mu)
	afterJobsRead func(id string, n int) // runs after each answered RunningJobs (under mu)
	statusOut     map[string]string      // document → stdout override
	pendingFor    int                    // statuses stay Pending this many reads
	reads         map[string]int
	// pause, when set, blocks Send until released (a paused replica).
	pause chan struct{}
	// holdJobs, when set, blocks RunningJobs until released (a slow metrics scrape); entered
	// receives once per blocked call.
	holdJobs, entered chan struct{}
	// heldFor is the time left on the context of the last held RunningJobs call when it began.
	heldFor time.Duration

	// lifecycle
	heartbeats []time.Time
	completes  []string
	// touched is the hook of every Heartbeat and Complete call, in order.
	touched      []string
	completeErrs int
	// completeLost: the next n Completes land (the action is completed) but their answer is
	// lost (the caller gets an error), as with a timeout after AWS took the call.
	completeLost int
	actionGone   bool // every action refused
	// endedElsewhere: Complete finds the action no longer pending (heartbeats still pass), as
	// when it ended between the step's heartbeat and its completion.
	endedElsewhere bool
	completed      map[string]bool
	violations     []string
	unregistered   map[string]bool
}

type sentCommand struct {
	id, document, instance string
	failed                 bool
	at                     time.Time
}

func newFakeWorld(start time.Time) *fakeWorld {
	return &fakeWorld{
		now: start, hookHeartbeat: 6 * time.Second, hookNames: []string{fleet.DefaultTerminateHook},
		jobs: map[string]int{}, metricsErr: map[string]error{}, groupState: map[string]string{},
		managed: map[string]bool{}, exited: map[string]bool{}, failDocs: map[string]int{},
		sendErr: map[string]error{}, lostAnswers: map[string]int{}, statusOut: map[string]string{}, reads: map[string]int{},
		unregistered: map[string]bool{}, completed: map[string]bool{},
	}
}

// addInstance puts an SSM-managed instance in Terminating:Wait with n jobs.
func (w *fakeWorld) addInstance(id string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jobs[id] = n
	w.groupState[id] = "Terminating:Wait"
	w.managed[id] = true
}

func (w *fakeWorld) setJobs(id string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jobs[id] = n
}

// Clock
func (w *fakeWorld) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *fakeWorld) advanceTo(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.After(w.now) {
		w.now = t
	}
}

// Jobs
func (w *fakeWorld) RunningJobs(ctx context.Context, _, id string) (int, error) {
	w.mu.Lock()
	hold, entered := w.holdJobs, w.entered
	w.mu.Unlock()
	if hold != nil {
		if d, ok := ctx.Deadline(); ok {
			w.mu.Lock()
			w.heldFor = time.Until(d)
			w.mu.Unlock()
		}
		entered <- struct{}{}
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.metricsErr[id]; err != nil {
		return 0, err
	}
	n := w.jobs[id]
	if w.afterJobsRead != nil {
		w.afterJobsRead(id, n)
	}
	return n, nil
}

// Commands
func (w *fakeWorld) Managed(_ context.Context, id string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.managed[id], nil
}

func (w *fakeWorld) Send(ctx context.Context, document, id string) (string, error) {
	w.mu.Lock()
	pause := w.pause
	w.mu.Unlock()
	if pause != nil {
		<-pause
	}
	// As the SDK does: a call on an expired context never reaches AWS.
	if err := ctx.Err(); err != nil {
		return "", err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.managed[id] {
		return "", errors.New("fake: InvalidInstanceId")
	}
	if err := w.sendErr[document]; err != nil {
		return "", err
	}
	c := sentCommand{id: fmt.Sprintf("cmd-%d", len(w.sends)+1), document: document, instance: id}
	if w.afterSend != nil {
		defer w.afterSend(document)
	}
	if n := w.failDocs[document]; n != 0 {
		c.failed = true
		if n > 0 {
			w.failDocs[document] = n - 1
		}
	}
	if document == DefaultStopIntakeDocument && !c.failed && w.jobs[id] == 0 {
		w.exited[id] = true
	}
	c.at = w.now
	w.sends = append(w.sends, c)
	if w.lostAnswers[document] > 0 {
		w.lostAnswers[document]--
		return "", errors.New("fake: operation error SSM: SendCommand, context deadline exceeded")
	}
	return c.id, nil
}

func (w *fakeWorld) Find(_ context.Context, document, id string, after time.Time) (string, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finds++
	if w.findErr != nil {
		return "", false, w.findErr
	}
	found := ""
	for _, c := range w.sends {
		if c.document == document && c.instance == id && !c.at.Before(after) {
			found = c.id
		}
	}
	return found, found != "", nil
}

func (w *fakeWorld) DocumentExists(_ context.Context, name string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.missingDocs[name], nil
}

func (w *fakeWorld) Status(_ context.Context, commandID, _ string) (string, string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var c *sentCommand
	for i := range w.sends {
		if w.sends[i].id == commandID {
			c = &w.sends[i]
		}
	}
	if c == nil {
		return "", "", errors.New("fake: no such command")
	}
	w.reads[commandID]++
	if w.reads[commandID] <= w.pendingFor {
		return CommandPending, "", nil
	}
	if c.failed {
		return "Failed", "", nil
	}
	switch c.document {
	case DefaultStatusDocument:
		if out, ok := w.statusOut[c.document]; ok {
			return CommandSuccess, out, nil
		}
		proc := "stopping"
		if w.jobs[c.instance] == 0 {
			proc = "exited"
		}
		return CommandSuccess, fmt.Sprintf(`{"process":%q,"running_jobs":%d}`+"\n", proc, w.jobs[c.instance]), nil
	case DefaultUnregisterDocument:
		if w.jobs[c.instance] > 0 {
			w.violations = append(w.violations, "unregister while jobs run")
		}
		w.unregistered[c.instance] = true
	}
	return CommandSuccess, "ok\n", nil
}

// Lifecycle
func (w *fakeWorld) HookTimeouts(_ context.Context, _, hook string) (time.Duration, time.Duration, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if hb, ok := w.hookHeartbeats[hook]; ok {
		return hb, 0, w.hookErr
	}
	return w.hookHeartbeat, 0, w.hookErr
}

func (w *fakeWorld) GroupExists(context.Context, string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.noGroup, w.hookErr
}

func (w *fakeWorld) TerminateHooks(context.Context, string) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hookNames, w.hookErr
}

func (w *fakeWorld) LaunchHooks(context.Context, string) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.launchHooks, w.hookErr
}

func (w *fakeWorld) InstanceState(_ context.Context, id string) (string, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.groupState[id]
	return s, ok, nil
}

func (w *fakeWorld) Heartbeat(_ context.Context, _, hook, _, id string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.touched = append(w.touched, hook)
	if w.actionGone || w.completed[id] {
		return false, nil
	}
	w.heartbeats = append(w.heartbeats, w.now)
	return true, nil
}

func (w *fakeWorld) Complete(ctx context.Context, _, hook, token, id, result string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.touched = append(w.touched, hook)
	if w.completeErrs > 0 {
		w.completeErrs--
		return false, errors.New("fake: throttled")
	}
	if w.jobs[id] > 0 {
		w.violations = append(w.violations, fmt.Sprintf("completed %s with %d jobs running", id, w.jobs[id]))
	}
	if w.actionGone || w.completed[id] || w.endedElsewhere {
		return false, nil
	}
	w.completes = append(w.completes, id+":"+result)
	w.completed[id] = true
	delete(w.groupState, id)
	if w.afterComplete != nil {
		w.afterComplete()
	}
	if w.completeLost > 0 {
		w.completeLost--
		return false, errors.New("fake: operation error Auto Scaling: CompleteLifecycleAction, context deadline exceeded")
	}
	return true, nil
}

func (w *fakeWorld) sent(document string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.sends {
		if c.document == document {
			n++
		}
	}
	return n
}

func (w *fakeWorld) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Errorf("invariant broken: %s", v)
	}
}

// fakeQueue collects scheduled follow-ups; deliver hands them out earliest first.
type fakeQueue struct {
	mu    sync.Mutex
	world *fakeWorld
	items []queued
	// drop makes the next n schedules vanish (a lost follow-up) after succeeding.
	drop int
	// fail makes the next n schedules fail (SQS errors after the SDK's retries).
	fail int
	// wholeSeconds rounds every delay up to whole seconds, as SQS's DelaySeconds does.
	wholeSeconds bool
}

type queued struct {
	at   time.Time
	step messages.DrainStep
}

func (q *fakeQueue) Schedule(ctx context.Context, s messages.DrainStep, delay time.Duration) error {
	if delay < 0 || delay > MaxDelay {
		return fmt.Errorf("fake queue: delay %s outside [0, %s]", delay, MaxDelay)
	}
	// As the SDK does: a call on a cancelled context never reaches SQS.
	if err := ctx.Err(); err != nil {
		return err
	}
	now := q.world.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.wholeSeconds {
		delay = (delay + time.Second - 1).Truncate(time.Second)
	}
	at := now.Add(delay)
	if q.fail > 0 {
		q.fail--
		return errors.New("fake queue: SendMessage: service unavailable")
	}
	if q.drop > 0 {
		q.drop--
		return nil
	}
	q.items = append(q.items, queued{at: at, step: s})
	return nil
}

func (q *fakeQueue) pop() (queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return queued{}, false
	}
	sort.SliceStable(q.items, func(i, j int) bool { return q.items[i].at.Before(q.items[j].at) })
	it := q.items[0]
	q.items = q.items[1:]
	return it, true
}

func (q *fakeQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// logBuffer is a race-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rig is one test's world: fakes and a handler over them.
type rig struct {
	t     *testing.T
	world *fakeWorld
	store *fakeStore
	queue *fakeQueue
	logs  *logBuffer
	m     *Metrics
	h     *Handler
	cfg   Config
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testFleet() fleet.Settings {
	return fleet.Settings{Name: "blue", GroupName: "blue-asg", Drain: fleet.DrainSettings{
		PollInterval: time.Second, CommandRetries: 2,
	}}
}

func newRig(t *testing.T, tweak func(*Config)) *rig {
	t.Helper()
	w := newFakeWorld(t0)
	r := &rig{t: t, world: w, store: newFakeStore(), queue: &fakeQueue{world: w}, logs: &logBuffer{}}
	r.cfg = Config{
		Fleets: []fleet.Settings{testFleet()}, StepTimeout: 5 * time.Second, CommandPoll: 500 * time.Millisecond,
		CommandTimeout: 10 * time.Second, RetryBase: time.Second, RetryMax: 4 * time.Second, SweepGrace: 3 * time.Second,
	}
	if tweak != nil {
		tweak(&r.cfg)
	}
	r.h = r.handler("replica-a")
	return r
}

func (r *rig) handler(owner string) *Handler {
	r.t.Helper()
	cfg := r.cfg
	cfg.Fleets = append([]fleet.Settings(nil), r.cfg.Fleets...)
	cfg.Owner = owner
	m := NewMetrics(nil)
	if r.m == nil {
		r.m = m
	}
	h, err := New(cfg, Deps{
		Store: r.store, Commands: r.world, Lifecycle: r.world, Jobs: r.world, FollowUps: r.queue,
		Clock: r.world, Logger: slog.New(slog.NewJSONHandler(r.logs, nil)), Metrics: m,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

func action(instance, token string) *messages.LifecycleAction {
	return &messages.LifecycleAction{
		LifecycleActionToken: token, AutoScalingGroupName: "blue-asg", LifecycleHookName: fleet.DefaultTerminateHook,
		EC2InstanceId: instance, LifecycleTransition: terminating,
	}
}

func (r *rig) start(instance, token string) {
	r.t.Helper()
	if err := r.h.Start(context.Background(), action(instance, token), r.world.Now()); err != nil {
		r.t.Fatalf("Start: %v", err)
	}
}

// deliver hands out follow-ups earliest first, moving the clock to each one's time, until
// stop says so or the queue is empty; each delivery may run hook (e.g. to end jobs).
func (r *rig) deliver(max int, hook func(now time.Time)) int {
	r.t.Helper()
	n := 0
	for ; n < max; n++ {
		it, ok := r.queue.pop()
		if !ok {
			return n
		}
		r.world.advanceTo(it.at)
		if hook != nil {
			hook(r.world.Now())
		}
		step := it.step
		if err := r.h.Handle(context.Background(), &messages.Message{Kind: messages.KindDrainStep, Payload: &step}); err != nil {
			r.t.Fatalf("Handle(DrainStep): %v", err)
		}
	}
	return n
}

// twoWatchingOfThree adds instances i-1, i-2 and i-3 with a job each and takes the drains of the
// first two (tok-1, tok-2) to their watch phase; i-3 is left for a new drain.
func (r *rig) twoWatchingOfThree() {
	for _, id := range []string{"i-1", "i-2", "i-3"} {
		r.world.addInstance(id, 1)
	}
	r.start("i-1", "tok-1")
	r.start("i-2", "tok-2")
	r.deliverUntilWatching("tok-1", "tok-2")
}

// holdPolls makes every jobs poll wait until hold is closed, after saying on entered that it
// came (room for two).
func (w *fakeWorld) holdPolls() (hold chan struct{}, entered chan struct{}) {
	hold, entered = make(chan struct{}), make(chan struct{}, 2)
	w.mu.Lock()
	w.holdJobs, w.entered = hold, entered
	w.mu.Unlock()
	return hold, entered
}

// deliverUntilWatching delivers follow-ups one at a time until every drain of tokens watches
// its jobs (stop intake sent and done).
func (r *rig) deliverUntilWatching(tokens ...string) {
	r.t.Helper()
	watching := func() bool {
		for _, token := range tokens {
			if r.record(token).Phase != phaseWatch {
				return false
			}
		}
		return true
	}
	for !watching() {
		if r.deliver(1, nil) == 0 {
			r.t.Fatalf("follow-ups ran out before the drains %v watched", tokens)
		}
	}
}

// latestStep is the follow-up the latest step of token's drain would have scheduled.
func (r *rig) latestStep(token string) *messages.Message {
	r.t.Helper()
	rec := r.record(token)
	_, version, _, _ := r.store.Load(context.Background(), partitionKey(token), sortKey)
	return &messages.Message{Kind: messages.KindDrainStep, Payload: &messages.DrainStep{
		Fleet: rec.Fleet, InstanceID: rec.InstanceID, ActionToken: token, GroupName: rec.Group,
		Attempt: int(version), Step: string(rec.Phase), IssuedAt: r.world.Now(),
	}}
}

func (r *rig) record(token string) record {
	r.t.Helper()
	body, _, found, err := r.store.Load(context.Background(), partitionKey(token), sortKey)
	if err != nil || !found {
		r.t.Fatalf("no drain record for %s: %v", token, err)
	}
	var rec record
	if err := jsonUnmarshal(body, &rec); err != nil {
		r.t.Fatal(err)
	}
	return rec
}
