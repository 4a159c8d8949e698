package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

func TestCheckFreeNamesTakenPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	free, err := emulator.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	err = checkFree(free, taken)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d is taken", taken)) ||
		strings.Contains(err.Error(), fmt.Sprint(free)) {
		t.Errorf("checkFree = %v; want only port %d named as taken", err, taken)
	}
}

// readyRE reads the two addresses off the ready line.
var readyRE = regexp.MustCompile(`^ready aws=(http://127\.0\.0\.1:([1-9][0-9]*)) runnersim=(http://127\.0\.0\.1:([1-9][0-9]*)) `)

// TestLocalWorldStartsAnswersAndStops runs the program as `make emulator` does (on free ports):
// it prints a ready line once both parts answer, both answer on loopback, and SIGTERM stops both.
func TestLocalWorldStartsAnswersAndStops(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "localworld")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	// Port 0 for both: each part binds a port the kernel picks and the ready line names it.
	cmd := exec.Command(bin, "--aws-port", "0", "--sim-port", "0")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}()

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var ready string
	timeout := time.After(2 * time.Minute)
	for ready == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the program ended without a ready line")
			}
			if strings.HasPrefix(line, "ready") {
				ready = line
			}
		case <-timeout:
			t.Fatal("no ready line within 2 minutes")
		}
	}
	go func() {
		for range lines {
		}
	}()
	m := readyRE.FindStringSubmatch(ready)
	if m == nil {
		t.Fatalf("ready line %q does not name the two loopback addresses", ready)
	}
	awsURL, simURL := m[1], m[3]
	awsPort, _ := strconv.Atoi(m[2])
	simPort, _ := strconv.Atoi(m[4])
	client := netguard.HTTPClient(5 * time.Second)
	for _, u := range []string{awsURL + "/_runnerfleet/health", simURL + "/healthz"} {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("after ready, %s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("after ready, %s answered %d", u, resp.StatusCode)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v; want 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("still running a minute after SIGTERM")
	}
	if err := checkFree(awsPort, simPort); err != nil {
		t.Errorf("after stopping: %v", err)
	}
}
