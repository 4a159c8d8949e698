package observe

import (
	"testing"

	"go.uber.org/goleak"
)

// No server goroutine outlives a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
