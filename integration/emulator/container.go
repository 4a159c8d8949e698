package emulator

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// EnvBackend chooses where Start and Launch get their emulator:
//
//	""  or "subprocess"  moto 5.2.1 with our extension, as a subprocess (the default; make test)
//	"moto-container"     the motoserver/moto:5.2.1 image through testcontainers-go
//	"localstack"         LocalStack through testcontainers-go; needs LOCALSTACK_AUTH_TOKEN
//
// Container backends are opt-in and plain: they carry none of our extension (lifecycle hooks,
// asynchronous SSM, emitted events, the transition log), so only the tests that need plain AWS
// APIs (the SQS transport, the state table, the adapters) pass on them; the others fail loudly
// naming what is missing. When no Docker daemon answers a ping, Start skips the test cleanly and
// Launch returns ErrNoDocker.
const EnvBackend = "RUNNERFLEET_EMULATOR"

// Backends.
const (
	BackendSubprocess    = "subprocess"
	BackendMotoContainer = "moto-container"
	BackendLocalStack    = "localstack"
)

// Images of the container backends, pinned to the moto release our extension patches.
const (
	motoImage       = "motoserver/moto:" + motoVersion
	localStackImage = "localstack/localstack-pro:4"
)

// ErrNoDocker is returned (Launch) or skipped on (Start) when a container backend is chosen and no
// Docker daemon answers.
var ErrNoDocker = errors.New("emulator: a container backend was chosen but no Docker daemon answers a ping")

// containerStartTimeout bounds an image pull and the container's readiness.
const containerStartTimeout = 5 * time.Minute

// backend reads EnvBackend and refuses unknown names.
func backend() (string, error) {
	switch b := os.Getenv(EnvBackend); b {
	case "", BackendSubprocess:
		return BackendSubprocess, nil
	case BackendMotoContainer, BackendLocalStack:
		return b, nil
	default:
		return "", fmt.Errorf("emulator: %s=%q: want %s, %s or %s", EnvBackend, b, BackendSubprocess, BackendMotoContainer, BackendLocalStack)
	}
}

// dockerAnswers pings the Docker daemon the way testcontainers-go would reach it.
func dockerAnswers(ctx context.Context) error {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.Health(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	return nil
}

// launchContainer starts a container backend and waits until its AWS endpoint answers.
func launchContainer(b string) (*Emulator, error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	if err := dockerAnswers(ctx); err != nil {
		return nil, err
	}
	req := testcontainers.ContainerRequest{}
	switch b {
	case BackendMotoContainer:
		req.Image = motoImage
		req.ExposedPorts = []string{"5000/tcp"}
		req.WaitingFor = wait.ForHTTP("/moto-api/data.json").WithPort("5000/tcp")
	case BackendLocalStack:
		token := os.Getenv("LOCALSTACK_AUTH_TOKEN")
		if token == "" {
			return nil, errors.New("emulator: the localstack backend needs LOCALSTACK_AUTH_TOKEN (LocalStack requires an auth token since March 2026)")
		}
		req.Image = localStackImage
		req.ExposedPorts = []string{"4566/tcp"}
		req.Env = map[string]string{"LOCALSTACK_AUTH_TOKEN": token}
		req.WaitingFor = wait.ForHTTP("/_localstack/health").WithPort("4566/tcp")
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if err != nil {
		if c != nil {
			_ = testcontainers.TerminateContainer(c)
		}
		return nil, fmt.Errorf("starting the %s container (%s): %w", b, req.Image, err)
	}
	endpoint, err := c.PortEndpoint(ctx, req.ExposedPorts[0], "http")
	if err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, fmt.Errorf("reading the %s container's endpoint: %w", b, err)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, fmt.Errorf("parsing the %s container's endpoint %q: %w", b, endpoint, err)
	}
	port, _ := strconv.Atoi(u.Port())
	return &Emulator{Endpoint: endpoint, Port: port, container: c, output: &lockedBuffer{}}, nil
}
