package runnersim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxControlBody bounds control request bodies.
const maxControlBody = 4 << 20

// Handler is the simulator's HTTP API:
//
//	POST   /instances                       Registration → 200 {"instance_id"}
//	GET    /instances                       {"instances": [InstanceState...]} (State without the jobs)
//	DELETE /instances/{id}                  → 200 {"killed": n}; 404 unknown
//	GET    /instances/{id}/metrics          gitlab-runner's metrics (text format), or the fault's answer
//	POST   /instances/{id}/actions/{action} stop-intake|status|unregister → 200 ActionResult; 404 unknown/terminated
//	POST   /instances/{id}/fault            {"mode": "none|hang|500|garbage|huge|slow|reject-token|hang-actions"}
//	POST   /jobs                            {"jobs":[{"id","duration_ms","arrive_after_ms"}]} → {"ids":[...]}
//	GET    /state                           State
//	POST   /config                          {"emulator_url": "http://127.0.0.1:P"}
//	GET    /healthz                         204
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /instances", s.handleRegister)
	mux.HandleFunc("GET /instances", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"instances": s.Instances()})
	})
	mux.HandleFunc("DELETE /instances/{id}", s.handleTerminate)
	mux.HandleFunc("GET /instances/{id}/metrics", s.handleMetrics)
	mux.HandleFunc("POST /instances/{id}/actions/{action}", s.handleAction)
	mux.HandleFunc("POST /instances/{id}/fault", s.handleFault)
	mux.HandleFunc("POST /jobs", s.handleJobs)
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.State()) })
	mux.HandleFunc("POST /config", s.handleConfig)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return mux
}

func (s *Sim) handleRegister(w http.ResponseWriter, r *http.Request) {
	var reg Registration
	if !readJSON(w, r, &reg) {
		return
	}
	if err := s.Register(reg); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"instance_id": reg.InstanceID})
}

func (s *Sim) handleTerminate(w http.ResponseWriter, r *http.Request) {
	n, err := s.Terminate(r.PathValue("id"))
	if err != nil {
		writeJSON(w, statusOf(err), map[string]any{"killed": 0, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"killed": n})
}

func (s *Sim) handleAction(w http.ResponseWriter, r *http.Request) {
	res, err := s.Action(r.Context(), r.PathValue("id"), r.PathValue("action"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Sim) handleFault(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Mode string `json:"mode"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if err := s.SetFault(r.PathValue("id"), body.Mode); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"mode": body.Mode})
}

func (s *Sim) handleJobs(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Jobs []Job `json:"jobs"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	ids, err := s.AddJobs(body.Jobs)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ids": ids})
}

func (s *Sim) handleConfig(w http.ResponseWriter, r *http.Request) {
	var body struct {
		EmulatorURL string `json:"emulator_url"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if err := s.SetEmulatorURL(body.EmulatorURL); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// handleMetrics serves one instance's metrics, or what its fault makes of them. An exited or
// terminated runner's metrics server is gone: the connection is closed without an answer.
func (s *Sim) handleMetrics(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	in, ok := s.instances[id]
	var snap snapshot
	var fault, process string
	if ok {
		snap, fault, process = in.snapshot(), in.fault, in.process
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("metrics of %s: %w", id, errNotFound))
		return
	}
	if process == ProcessExited || process == ProcessTerminated {
		dropConnection(w)
		return
	}
	switch fault {
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	case Fault500:
		http.Error(w, "500 Internal Server Error: simulated fault", http.StatusInternalServerError)
		return
	case FaultGarbage:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = io.WriteString(w, "gitlab_runner_jobs{{{ this is not the text format\n\x00\xff 1 2 3 4\n")
		return
	}
	body, err := snap.render()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", string(textFormat))
	switch fault {
	case FaultHuge:
		s.writeHuge(w, r, body)
	case FaultSlow:
		s.writeSlow(w, r, body)
	default:
		_, _ = w.Write(body)
	}
}

// writeHuge writes the real metrics followed by comment lines up to Config.HugeBodyBytes, in
// chunks, stopping when the client goes away.
func (s *Sim) writeHuge(w http.ResponseWriter, r *http.Request, body []byte) {
	if _, err := w.Write(body); err != nil {
		return
	}
	line := []byte("# padding: a runner's metrics body far larger than any scrape should read\n")
	chunk := make([]byte, 0, 64<<10)
	for len(chunk)+len(line) <= cap(chunk) {
		chunk = append(chunk, line...)
	}
	for written := len(body); written < s.cfg.HugeBodyBytes; written += len(chunk) {
		if r.Context().Err() != nil {
			return
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// writeSlow trickles the metrics 16 bytes per Config.SlowChunkInterval.
func (s *Sim) writeSlow(w http.ResponseWriter, r *http.Request, body []byte) {
	flusher, _ := w.(http.Flusher)
	t := time.NewTicker(max(s.cfg.SlowChunkInterval, time.Millisecond))
	defer t.Stop()
	for len(body) > 0 {
		n := min(16, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		body = body[n:]
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// dropConnection closes the client's connection without an HTTP answer.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func statusOf(err error) int {
	if errors.Is(err, errNotFound) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decoding the request body: %w", err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
