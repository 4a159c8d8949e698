package runner

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCfnLint runs cfn-lint on every template of deploy/ (one process: its start-up dominates).
// make test puts cfn-lint on PATH (scripts/tools.sh); without it this test fails, never skips.
func TestCfnLint(t *testing.T) {
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Fatalf("cfn-lint is not on PATH (run the tests through make test, or: scripts/tools.sh): %v", err)
	}
	paths := templatePaths(t)
	out, err := exec.Command(bin, append([]string{"--format", "parseable", "--"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint %v: %v\n%s", paths, err, strings.TrimSpace(string(out)))
	}
}
