package observe

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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// checkTimeout bounds each readiness check: a load balancer or ECS health check gives up after a
// few seconds, and a queue that does not answer within 5 s is not ready.
const checkTimeout = 5 * time.Second

// Check is one readiness check (for example "this queue answers"); nil means ready.
type Check func(ctx context.Context) error

// Server serves /metrics (Prometheus text format), /healthz (200 while the process runs) and
// /readyz (200 when every check passes and the worker is not shutting down, 503 with the failures
// otherwise).
type Server struct {
	logger   *slog.Logger
	checks   map[string]Check
	stopping atomic.Bool
	srv      *http.Server
	ln       net.Listener
	done     chan error
}

// NewServer listens on addr ("127.0.0.1:9090", ":0" for a free port) and prepares the handlers.
// Serve starts serving; Shutdown stops.
func NewServer(addr string, gatherer prometheus.Gatherer, checks map[string]Check, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		return nil, errors.New("observe: nil logger")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s := &Server{logger: logger, checks: checks, ln: ln, done: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr is the address the server listens on (with the port chosen when addr had port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves in a goroutine; errors other than a clean shutdown are logged.
func (s *Server) Serve() {
	go func() {
		err := s.srv.Serve(s.ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("observability server stopped", "error", err)
		}
		s.done <- err
	}()
}

// SetStopping makes /readyz answer 503 from now on (the worker is shutting down).
func (s *Server) SetStopping() { s.stopping.Store(true) }

// Shutdown stops the server, waiting for open requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopping the observability server: %w", err)
	}
	return nil
}

type readiness struct {
	Ready    bool              `json:"ready"`
	Failures map[string]string `json:"failures,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	res := readiness{Ready: true, Failures: map[string]string{}}
	if s.stopping.Load() {
		res.Ready = false
		res.Failures["worker"] = "shutting down"
	}
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
			defer cancel()
			if err := s.checks[n](ctx); err != nil {
				mu.Lock()
				res.Ready = false
				res.Failures[n] = err.Error()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	w.Header().Set("Content-Type", "application/json")
	if !res.Ready {
		s.logger.WarnContext(r.Context(), "not ready", "failures", res.Failures)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(res)
}
