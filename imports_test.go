package runnerfleet_test

// The "may import" column of shared/DESIGN.md, enforced over `go list -deps`.
//
// For every package of this module: each of its dependencies inside the module must be allowed,
// and each of its direct imports outside the standard library must be allowed. (What an allowed
// library pulls in transitively is that library's business.)

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/runnerfleet/runnerfleet"

type rule struct {
	// layer is a package path relative to the module ("handlers" covers handlers/...).
	layer string
	// internal lists the module layers it may depend on; "*" means any.
	internal []string
	// deniedInternal lists layers it may never depend on (with internal "*").
	deniedInternal []string
	// thirdParty lists import path prefixes it may import directly; "*" means any.
	thirdParty []string
}

var rules = []rule{
	{layer: "cmd/worker", internal: []string{"*"}, thirdParty: []string{"*"}},
	{layer: "cmd/publisher", internal: []string{"*"}, deniedInternal: []string{"integration"}, thirdParty: []string{"*"}},
	{layer: "handlers", internal: []string{"messages", "scaling", "fleet"}, thirdParty: []string{"github.com/prometheus/client_golang"}},
	{layer: "messages", internal: nil, thirdParty: nil},
	{layer: "scaling", internal: []string{"fleet"}, thirdParty: []string{"github.com/robfig/cron/v3"}},
	{layer: "fleet", internal: nil, thirdParty: nil},
	{layer: "infra", internal: []string{"*"}, deniedInternal: []string{"cmd", "integration"}, thirdParty: []string{"*"}},
	{layer: "deploy/runner", internal: nil, thirdParty: nil},
	{layer: "integration", internal: []string{"*"}, thirdParty: []string{"*"}},
}

type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) == 0 {
		t.Fatal("go list returned no packages")
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		r, ok := ruleFor(rel)
		if !ok {
			if rel != "" {
				t.Errorf("%s: no import rule covers this package; add it to DESIGN.md and to this test", rel)
			}
			continue
		}
		for _, dep := range p.Deps {
			if !strings.HasPrefix(dep, module+"/") {
				continue
			}
			drel := strings.TrimPrefix(dep, module+"/")
			if inLayer(drel, r.layer) {
				continue
			}
			if !allowedInternal(r, drel) {
				t.Errorf("%s may not depend on %s (rule for %s)", rel, drel, r.layer)
			}
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module) || isStd(imp) {
				continue
			}
			if !allowedThirdParty(r, imp) {
				t.Errorf("%s may not import %s (rule for %s)", rel, imp, r.layer)
			}
		}
	}
}

// The rules themselves must be able to fail: a handler importing infra is refused.
func TestImportRulesRefuseViolations(t *testing.T) {
	h, _ := ruleFor("handlers/drain")
	if allowedInternal(h, "infra/aws") {
		t.Error("handlers may import infra/aws: the rule is broken")
	}
	if allowedThirdParty(h, "github.com/aws/aws-sdk-go-v2/service/ssm") {
		t.Error("handlers may import the AWS SDK: the rule is broken")
	}
	p, _ := ruleFor("cmd/publisher")
	if allowedInternal(p, "integration/emulator") {
		t.Error("the publisher may import integration: the rule is broken")
	}
	if _, ok := ruleFor("somewhere/new"); ok {
		t.Error("an unknown layer matched a rule")
	}
}

func ruleFor(rel string) (rule, bool) {
	for _, r := range rules {
		if inLayer(rel, r.layer) {
			return r, true
		}
	}
	return rule{}, false
}

func inLayer(rel, layer string) bool { return rel == layer || strings.HasPrefix(rel, layer+"/") }

func allowedInternal(r rule, dep string) bool {
	for _, d := range r.deniedInternal {
		if inLayer(dep, d) {
			return false
		}
	}
	for _, a := range r.internal {
		if a == "*" || inLayer(dep, a) {
			return true
		}
	}
	return false
}

func allowedThirdParty(r rule, imp string) bool {
	for _, a := range r.thirdParty {
		if a == "*" || imp == a || strings.HasPrefix(imp, a+"/") {
			return true
		}
	}
	return false
}

// isStd: standard library paths have no dot in their first element.
func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	// -json lists each package's Deps (transitive, what `go list -deps` walks) and Imports.
	cmd := exec.Command("go", "list", "-json", "./...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}
