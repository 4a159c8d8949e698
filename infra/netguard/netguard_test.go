package netguard_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

func TestDialerAllowsLoopback(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	resp, err := netguard.HTTPClient(2 * time.Second).Get(srv.URL)
	if err != nil {
		t.Fatalf("loopback request refused: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status = %d, want 204", resp.StatusCode)
	}
}

// The refusal happens in Control, before connect(2): no packet is sent to these addresses.
func TestDialerRefusesEverythingElse(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"10.0.1.17:9252", "192.168.1.1:80", "172.16.0.1:443", "8.8.8.8:53", "[2001:db8::1]:80", "169.254.169.254:80"} {
		_, err := netguard.Dialer().DialContext(context.Background(), "tcp", addr)
		if !errors.Is(err, netguard.ErrNotLoopback) {
			t.Errorf("dial %s: err = %v, want ErrNotLoopback", addr, err)
		}
	}
	_, err := netguard.HTTPClient(time.Second).Get("http://10.0.1.17:9252/metrics")
	if !errors.Is(err, netguard.ErrNotLoopback) {
		t.Errorf("http get to 10.x: err = %v, want ErrNotLoopback", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("want a *net.OpError from the refused dial, got %T", err)
	}
}
