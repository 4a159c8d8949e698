package runner

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// No Docker engine runs here, so the Dockerfile is checked by reading it: multi-stage, static
// binaries (CGO_ENABLED=0) of the worker and the publisher, a minimal base pinned by digest, a
// non-root user.

const dockerfilePath = "../../Dockerfile"

type stage struct {
	from  string // image after ARG substitution
	lines []string
}

// parseDockerfile splits a Dockerfile into stages, joining continuation lines and substituting
// the global ARG defaults into FROM.
func parseDockerfile(src string) (args map[string]string, stages []stage) {
	args = map[string]string{}
	src = strings.ReplaceAll(src, "\\\n", " ")
	for _, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(word) {
		case "ARG":
			if len(stages) == 0 {
				k, v, _ := strings.Cut(strings.TrimSpace(rest), "=")
				args[k] = v
				continue
			}
		case "FROM":
			image := strings.Fields(rest)[0]
			image = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`).ReplaceAllStringFunc(image, func(s string) string {
				return args[strings.Trim(s, "${}")]
			})
			stages = append(stages, stage{from: image})
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	return args, stages
}

func checkDockerfile(src string) []string {
	var ps []string
	_, stages := parseDockerfile(src)
	if len(stages) < 2 {
		return append(ps, fmt.Sprintf("%d stage(s): want a build stage and a minimal runtime stage", len(stages)))
	}
	pinned := regexp.MustCompile(`^[^@\s]+:[^@\s]+@sha256:[a-f0-9]{64}$`)
	for i, s := range stages {
		if !pinned.MatchString(s.from) {
			ps = append(ps, fmt.Sprintf("stage %d: base %q is not pinned by digest (name:tag@sha256:...)", i, s.from))
		}
	}
	build := strings.Join(stages[0].lines, "\n")
	if !regexp.MustCompile(`(?m)(^ENV .*\bCGO_ENABLED=0\b|\bCGO_ENABLED=0 go build)`).MatchString(build) {
		ps = append(ps, "build stage: CGO_ENABLED=0 is not set (static binaries)")
	}
	for _, pkg := range []string{"./cmd/worker", "./cmd/publisher"} {
		if !regexp.MustCompile(`go build [^\n&]*` + regexp.QuoteMeta(pkg) + `\b`).MatchString(build) {
			ps = append(ps, "build stage: does not build "+pkg)
		}
	}
	final := stages[len(stages)-1]
	if !strings.Contains(final.from, "distroless/static") && !strings.HasPrefix(final.from, "scratch") {
		ps = append(ps, fmt.Sprintf("runtime stage: base %q is not minimal (distroless static)", final.from))
	}
	user := ""
	for _, l := range final.lines {
		if strings.HasPrefix(strings.ToUpper(l), "USER ") {
			user = strings.TrimSpace(l[5:])
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		ps = append(ps, fmt.Sprintf("runtime stage: user %q, want a non-root USER", user))
	}
	return ps
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkDockerfile(string(b)) {
		t.Error(p)
	}
}

func TestDockerfileChecksCatchBreakage(t *testing.T) {
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	for _, tc := range []struct{ name, old, new, want string }{
		{"unpinned runtime base", "static-debian12:nonroot@sha256:", "static-debian12:nonroot@sha:", "not pinned"},
		{"unpinned build base", "golang:1.26-alpine@sha256:", "golang:1.26-alpine@", "not pinned"},
		{"cgo on", "CGO_ENABLED=0", "CGO_ENABLED=1", "CGO_ENABLED=0"},
		{"root user", "USER 65532:65532", "USER root", "non-root"},
		{"no user", "USER 65532:65532", "", "non-root"},
		{"publisher not built", "./cmd/publisher", "./cmd/other", "./cmd/publisher"},
		{"fat runtime base", "gcr.io/distroless/static-debian12:nonroot@", "debian:12@", "not minimal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("Dockerfile has no %q to break", tc.old)
			}
			got := strings.Join(checkDockerfile(strings.ReplaceAll(good, tc.old, tc.new)), "\n")
			if !strings.Contains(got, tc.want) {
				t.Fatalf("want a problem mentioning %q, got %q", tc.want, got)
			}
		})
	}
}
