package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"healthy", ok.URL + "/healthz", true},
		{"unhealthy status", bad.URL + "/healthz", false},
		{"nothing listening", closedURL + "/healthz", false},
		{"not loopback", "http://10.0.0.1:9090/healthz", false},
		{"a name, not an address", "http://localhost.example:9090/healthz", false},
		{"not http", "ftp://127.0.0.1/healthz", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := check(tc.url)
			if (err == nil) != tc.ok {
				t.Fatalf("check(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			}
		})
	}
}
