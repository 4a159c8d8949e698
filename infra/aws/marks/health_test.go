package marks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	smithy "github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/launch"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// fakeEC2 answers DescribeInstances with err, or with instance i-1 at ip ("" : no instance).
type fakeEC2 struct {
	ip  string
	err error
}

func (f fakeEC2) DescribeInstances(_ context.Context, _ *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := &ec2.DescribeInstancesOutput{}
	if f.ip != "" {
		out.Reservations = []ec2types.Reservation{{Instances: []ec2types.Instance{{InstanceId: aws.String("i-1"), PrivateIpAddress: aws.String(f.ip)}}}}
	}
	return out, nil
}

// The adapter says whose failure a look was: a DescribeInstances that fails (throttled, access
// denied, a 5xx, the worker's deadline), a URL template that cannot be made, or an address the
// worker's egress guard refuses are the worker's (*launch.WorkerError); a refused connection, a
// runner that does not answer in time, an HTTP error or garbled page, an instance EC2 no longer
// has, are the runner's. Every connection stays on 127.0.0.1.
func TestRunnersTellTheWorkersFailuresFromTheRunners(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write([]byte(page))
		case "/hang":
			<-r.Context().Done()
		case "/5xx":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("<html>not metrics"))
		}
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	// A port nothing listens on: a listener opened and closed again.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closedPort, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()

	api := func(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }
	for name, tc := range map[string]struct {
		ec2    fakeEC2
		url    string // the fleet's metrics URL template
		ctx    func() (context.Context, context.CancelFunc)
		worker string // "": the runner's failure (or none, when ok)
		ok     bool
	}{
		"answers":                   {ec2: fakeEC2{ip: "127.0.0.1"}, url: "http://{{.PrivateIP}}:" + port + "/metrics", ok: true},
		"ec2 access denied":         {ec2: fakeEC2{err: api("UnauthorizedOperation", "You are not authorized to perform this operation.")}, worker: launch.WorkerAccessDenied},
		"ec2 AccessDenied":          {ec2: fakeEC2{err: api("AccessDenied", "no")}, worker: launch.WorkerAccessDenied},
		"ec2 throttled":             {ec2: fakeEC2{err: api("RequestLimitExceeded", "Request limit exceeded.")}, worker: launch.WorkerThrottled},
		"ec2 5xx":                   {ec2: fakeEC2{err: api("InternalError", "oops")}, worker: launch.WorkerAWSError},
		"ec2 no answer in the step": {ec2: fakeEC2{err: context.DeadlineExceeded}, worker: launch.WorkerDeadline},
		"instance gone":             {ec2: fakeEC2{}, worker: ""},
		"url template fails":        {ec2: fakeEC2{ip: "127.0.0.1"}, url: "http://{{.PrivateIP}}:" + port + "/{{.Nope}}", worker: launch.WorkerURLTemplate},
		"guard refuses the address": {ec2: fakeEC2{ip: "10.0.0.7"}, worker: launch.WorkerNetwork},
		"step already over": {ec2: fakeEC2{ip: "127.0.0.1"}, url: "http://{{.PrivateIP}}:" + port + "/hang", worker: launch.WorkerDeadline,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			}},
		"connection refused":     {ec2: fakeEC2{ip: "127.0.0.1"}, url: "http://{{.PrivateIP}}:" + closedPort + "/metrics", worker: ""},
		"runner does not answer": {ec2: fakeEC2{ip: "127.0.0.1"}, url: "http://{{.PrivateIP}}:" + port + "/hang", worker: ""},
		"runner 5xx":             {ec2: fakeEC2{ip: "127.0.0.1"}, url: "http://{{.PrivateIP}}:" + port + "/5xx", worker: ""},
		"garbled page":           {ec2: fakeEC2{ip: "127.0.0.1"}, url: "http://{{.PrivateIP}}:" + port + "/garbled", worker: ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := tc.url
			if url == "" {
				url = "http://{{.PrivateIP}}:" + port + "/metrics"
			}
			// The client's own timeout (the runner's time to answer) is well inside the step's.
			r, err := NewRunners(netguard.HTTPClient(500*time.Millisecond), []fleet.Settings{{Name: "blue", MetricsURL: url}}, IPs{API: tc.ec2})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if tc.ctx != nil {
				cancel()
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			_, _, err = r.RequestJobs(ctx, "blue", "i-1")
			_, jobsErr := r.RunningJobs(ctx, "blue", "i-1")
			if tc.ok {
				if err != nil || jobsErr != nil {
					t.Fatalf("RequestJobs: %v, RunningJobs: %v; want answers", err, jobsErr)
				}
				return
			}
			for call, err := range map[string]error{"RequestJobs": err, "RunningJobs": jobsErr} {
				var we *launch.WorkerError
				switch {
				case err == nil:
					t.Errorf("%s: no error", call)
				case tc.worker == "" && errors.As(err, &we):
					t.Errorf("%s: %v taken as the worker's failure (%s); it is the runner's", call, err, we.Reason)
				case tc.worker != "" && !errors.As(err, &we):
					t.Errorf("%s: %v taken as the runner's failure; it is the worker's (%s)", call, err, tc.worker)
				case tc.worker != "" && we.Reason != tc.worker:
					t.Errorf("%s: %v as the worker's %s, want %s", call, err, we.Reason, tc.worker)
				case !strings.Contains(err.Error(), "i-1"):
					t.Errorf("%s: %v does not name the instance", call, err)
				}
			}
		})
	}
}

// A request that fails on the worker's own socket — out of file descriptors (EMFILE, ENFILE), out
// of local ports (EADDRNOTAVAIL), no route from the worker's subnet (ENETUNREACH) — is the
// worker's failure, as the dialer reports it (a *net.OpError around an *os.SyscallError); a
// refused connection or an unreachable host is the runner's.
func TestWorkerSocketFailuresAreTheWorkers(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		errno  syscall.Errno
		worker bool
	}{
		"too many open files":          {syscall.EMFILE, true},
		"too many open files (system)": {syscall.ENFILE, true},
		"no local port":                {syscall.EADDRNOTAVAIL, true},
		"network unreachable":          {syscall.ENETUNREACH, true},
		"connection refused":           {syscall.ECONNREFUSED, false},
		"host unreachable":             {syscall.EHOSTUNREACH, false},
	} {
		t.Run(name, func(t *testing.T) {
			dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", tc.errno)}
			err := requestFailure(context.Background(), fmt.Errorf("runner metrics of i-1: no answer: %w",
				&url.Error{Op: "Get", URL: "http://10.0.0.7:9252/metrics", Err: dial}))
			var we *launch.WorkerError
			switch {
			case tc.worker && (!errors.As(err, &we) || we.Reason != launch.WorkerNetwork):
				t.Errorf("%v: want the worker's failure (%s)", err, launch.WorkerNetwork)
			case !tc.worker && errors.As(err, &we):
				t.Errorf("%v taken as the worker's failure (%s); it is the runner's", err, we.Reason)
			}
		})
	}
}
