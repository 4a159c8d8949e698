package emulator

import (
	"errors"
	"testing"
)

// A port taken between FreePort and the emulator's bind — here by another emulator, which
// answers the health check too — is reported as taken, never mistaken for our emulator; Launch
// then tries another port.
func TestLaunchOnATakenPort(t *testing.T) {
	setTestEnv()
	first := Start(t, Options{})
	e, err := launchOn(first.Port, Options{})
	if err == nil {
		_ = e.Stop()
		t.Fatalf("a second emulator on port %d was taken for ready: the first one answered for it", first.Port)
	}
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("launching on a taken port: %v, want errPortTaken", err)
	}
}
