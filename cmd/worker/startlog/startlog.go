// Package startlog holds the one contract between the worker and whatever starts it (the demo,
// the tests that run its binary): the JSON log line the worker writes once it is running, which
// names the address it listens on, port 0 resolved.
package startlog

import (
	"bytes"
	"encoding/json"
)

// Running is the message of the line the worker logs once its router runs; its "listen"
// attribute is the address of its HTTP server (metrics, probes).
const Running = "worker running"

// ListenAddr reads the worker's JSON log output and returns the address named by its first
// complete "worker running" line, or false when there is none yet.
func ListenAddr(log []byte) (string, bool) {
	for line := range bytes.Lines(log) {
		if !bytes.HasSuffix(line, []byte("\n")) || !bytes.Contains(line, []byte(Running)) {
			continue // still being written, or another line
		}
		var l struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == Running && l.Listen != "" {
			return l.Listen, true
		}
	}
	return "", false
}
