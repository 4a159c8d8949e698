package emulator_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// The opt-in container backend runs when RUNNERFLEET_EMULATOR names one (the subprocess backend,
// the default, is what every other test in the repository uses). Run it as:
//
//	RUNNERFLEET_EMULATOR=moto-container go test -run TestContainerBackend ./integration/emulator/
//
// Without a Docker daemon it skips cleanly — that is the contract for the opt-in backend.
func TestContainerBackend(t *testing.T) {
	b := os.Getenv(emulator.EnvBackend)
	if b == "" || b == emulator.BackendSubprocess {
		t.Skipf("opt-in: set %s=%s or %s to run against a container", emulator.EnvBackend, emulator.BackendMotoContainer, emulator.BackendLocalStack)
	}
	e := emulator.Start(t, emulator.Options{}) // skips when no Docker daemon answers
	client := sqs.NewFromConfig(e.AWSConfig(t))
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(emulator.UniqueName(t, "runnerfleet-container"))})
	if err != nil {
		t.Fatalf("CreateQueue on the %s backend: %v", b, err)
	}
	if aws.ToString(out.QueueUrl) == "" {
		t.Fatal("no queue URL")
	}
}

// The skip path itself, run in a child test process so the parent's environment is untouched:
// with the moto-container backend chosen and DOCKER_HOST pointing at a socket nobody serves,
// Launch returns ErrNoDocker and Start skips (exit 0, "SKIP" in the output) instead of failing.
func TestContainerBackendSkipsWithoutDocker(t *testing.T) {
	if os.Getenv("RUNNERFLEET_CHILD") == "1" {
		_, err := emulator.Launch(emulator.Options{})
		if !errors.Is(err, emulator.ErrNoDocker) {
			t.Fatalf("Launch without Docker: err = %v, want ErrNoDocker", err)
		}
		emulator.Start(t, emulator.Options{})
		t.Fatal("Start did not skip without Docker")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestContainerBackendSkipsWithoutDocker$", "-test.v")
	cmd.Env = append(os.Environ(),
		"RUNNERFLEET_CHILD=1",
		emulator.EnvBackend+"="+emulator.BackendMotoContainer,
		"DOCKER_HOST=unix://"+t.TempDir()+"/no-docker.sock",
		"TESTCONTAINERS_RYUK_DISABLED=true",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child test failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- SKIP") || !strings.Contains(string(out), "no Docker daemon answers") {
		t.Fatalf("child test did not skip with the reason:\n%s", out)
	}
}

// An unknown backend name is refused, not silently replaced by the default.
func TestUnknownBackendRefused(t *testing.T) {
	if os.Getenv("RUNNERFLEET_CHILD") == "1" {
		_, err := emulator.Launch(emulator.Options{})
		if err == nil || !strings.Contains(err.Error(), emulator.EnvBackend) {
			t.Fatalf("Launch with an unknown backend: err = %v, want a refusal naming %s", err, emulator.EnvBackend)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnknownBackendRefused$")
	cmd.Env = append(os.Environ(), "RUNNERFLEET_CHILD=1", emulator.EnvBackend+"=docker-compose")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
