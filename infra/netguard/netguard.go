// Package netguard keeps a process's outbound HTTP traffic on loopback.
//
// Tests, the demo and benchmarks run against a local world (the AWS emulator and the runner
// simulator on 127.0.0.1). The emulator hands EC2 instances fake private addresses (10.x.x.x); a
// mistake in a URL template must never turn into traffic to them. A Dialer from this package
// refuses, before any packet leaves, every address outside 127.0.0.0/8 and ::1.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"
)

// ErrNotLoopback is wrapped by the error a guarded dial returns for a non-loopback address.
var ErrNotLoopback = fmt.Errorf("netguard: refusing to connect outside loopback")

// Dialer returns a net.Dialer that refuses to connect to any address that is not loopback.
// The check runs on the resolved address (Control), so host names that resolve elsewhere are
// refused too.
func Dialer() *net.Dialer {
	return &net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("%w: %q: %v", ErrNotLoopback, address, err)
			}
			ip := net.ParseIP(host)
			if ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("%w: %s", ErrNotLoopback, address)
			}
			return nil
		},
	}
}

// Transport returns an http.Transport that dials through Dialer, ignores proxy settings (a proxy
// would be a non-loopback hop) and keeps enough idle connections for a fan-out over many targets.
func Transport() *http.Transport {
	d := Dialer()
	return &http.Transport{
		Proxy:               nil,
		DialContext:         func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) },
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
}

// HTTPClient returns an http.Client using Transport.
func HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Transport: Transport(), Timeout: timeout}
}

// LocalFailure reports whether err, from a request this process made, is a failure of its own
// network side rather than of the peer: the guard refused the address (ErrNotLoopback), its DNS
// resolver failed (a name that does not exist is the peer's), or its own sockets failed (out of
// file descriptors or local ports, no route from its own subnet). Refused, reset, unreachable
// host or no answer in time are the peer's.
func LocalFailure(err error) bool {
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotLoopback):
		return true
	case errors.As(err, &dnsErr) && !dnsErr.IsNotFound:
		return true
	}
	for _, errno := range localSocketErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// localSocketErrnos are failures of this process's own sockets, whatever the peer does.
var localSocketErrnos = []error{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENETUNREACH}
