package emulator_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// The emulator keeps HTTP/1.1 connections open (rfemu/keepalive.py): several requests are
// answered on one connection, each framed by its Content-Length, even when the application never
// reads a request's body; a client that asks to close gets its connection closed.
func TestEmulatorKeepsConnectionsAlive(t *testing.T) {
	t.Parallel()
	e := emulator.Start(t, emulator.Options{})
	host := strings.TrimPrefix(e.Endpoint, "http://")
	conn, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	listQueues := "POST / HTTP/1.1\r\nHost: %s\r\nX-Amz-Target: AmazonSQS.ListQueues\r\n" +
		"Content-Type: application/x-amz-json-1.0\r\n" +
		"Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0\r\n" +
		"Content-Length: 2\r\n\r\n{}"
	// The health endpoint reads no body: its bytes must not be taken for the next request.
	health := "GET /_runnerfleet/health HTTP/1.1\r\nHost: %s\r\nContent-Length: 11\r\n\r\nnot-read-by"
	for i, req := range []string{listQueues, health, listQueues, health} {
		if _, err := fmt.Fprintf(conn, req, host); err != nil {
			t.Fatalf("request %d on the kept connection: %v", i, err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response %d on the kept connection: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("response %d: %s %s", i, resp.Status, body)
		}
		if resp.Close {
			t.Fatalf("response %d asks to close the connection (Connection: %q)", i, resp.Header.Get("Connection"))
		}
	}

	// Connection: close from the client: answered, then closed by the emulator.
	if _, err := fmt.Fprintf(conn, "GET /_runnerfleet/health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("response to a request asking to close: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health with Connection: close: %s", resp.Status)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after a request asking to close, reading the connection gave %v, want EOF", err)
	}
}
