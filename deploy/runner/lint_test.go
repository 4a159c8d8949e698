package runner

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCfnLint runs cfn-lint on every template of deploy/, plus a copy of the runner template with
// a misspelt property, in one process (its start-up dominates): the copy must be reported, the
// real templates must not. make test puts cfn-lint on PATH (scripts/tools.sh); without it this
// test fails, it never skips.
func TestCfnLint(t *testing.T) {
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Fatalf("cfn-lint is not on PATH (run the tests through make test, or: scripts/tools.sh): %v", err)
	}
	good := templatePaths(t)
	src, err := os.ReadFile(runnerPath)
	if err != nil {
		t.Fatal(err)
	}
	const typo = "MetadataOptionz:"
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte(strings.Replace(string(src), "MetadataOptions:", typo, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append([]string{"--format", "parseable", "--"}, append(good, broken)...)...).CombinedOutput()
	if err == nil {
		t.Fatalf("cfn-lint passed a template with %s\n%s", typo, out)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case strings.HasPrefix(line, broken):
			found = found || strings.Contains(line, strings.TrimSuffix(typo, ":"))
		case line != "":
			t.Errorf("cfn-lint: %s", line)
		}
	}
	if !found {
		t.Errorf("cfn-lint did not report %s in the broken copy:\n%s", typo, out)
	}
}
