package scale

import (
	"testing"

	"go.uber.org/goleak"
)

// Every tick waits for its metrics publish: no goroutine may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
