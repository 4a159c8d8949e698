// Command probe is the worker container's health check: the image is distroless (no shell, no
// curl), so ECS runs `probe URL`, which exits 0 when URL answers 200 within two seconds and 1
// otherwise. It only ever dials loopback.
//
// It lives here because deploy/runner may import only the standard library, which is all it needs;
// a `worker probe` subcommand would serve as well.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// timeout bounds the whole check: ECS's health check timeout is 5 s and a live worker answers
// /healthz at once.
const timeout = 2 * time.Second

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe http://127.0.0.1:PORT/PATH")
		os.Exit(2)
	}
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

// check asks target and returns nil when it answers 200. It refuses any host but loopback.
func check(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", target, err)
	}
	ip := net.ParseIP(u.Hostname())
	if u.Scheme != "http" || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: only http://127.x.x.x or http://[::1] is probed", target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return nil
}
