package router

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine of the router, its retries or its timeouts outlives a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
