package documents

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type document struct {
	SchemaVersion string `yaml:"schemaVersion"`
	Description   string `yaml:"description"`
	MainSteps     []struct {
		Action string `yaml:"action"`
		Name   string `yaml:"name"`
		Inputs struct {
			TimeoutSeconds string   `yaml:"timeoutSeconds"`
			RunCommand     []string `yaml:"runCommand"`
		} `yaml:"inputs"`
	} `yaml:"mainSteps"`
}

func load(t *testing.T, name string) (document, string) {
	t.Helper()
	b, err := FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var d document
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var script []string
	for _, s := range d.MainSteps {
		script = append(script, s.Inputs.RunCommand...)
	}
	return d, strings.Join(script, "\n")
}

// maxTimeout: none of the documents blocks, so each is cut well before AWS-RunShellScript's
// default 3600 s (the limit drains must outlast).
const maxTimeout = 300

func TestDocumentsShape(t *testing.T) {
	for _, name := range []string{StopIntake, Status, Unregister} {
		d, script := load(t, name)
		if d.SchemaVersion != "2.2" {
			t.Errorf("%s: schemaVersion %q, want 2.2", name, d.SchemaVersion)
		}
		if len(d.MainSteps) == 0 || script == "" {
			t.Fatalf("%s: no shell", name)
		}
		for _, s := range d.MainSteps {
			if s.Action != "aws:runShellScript" {
				t.Errorf("%s: step %s is %s, want aws:runShellScript", name, s.Name, s.Action)
			}
			n, err := strconv.Atoi(s.Inputs.TimeoutSeconds)
			if err != nil || n <= 0 || n > maxTimeout {
				t.Errorf("%s: step %s timeoutSeconds %q, want 1..%d", name, s.Name, s.Inputs.TimeoutSeconds, maxTimeout)
			}
		}
	}
}

func TestDocumentsLint(t *testing.T) {
	for _, name := range []string{StopIntake, Status, Unregister} {
		_, script := load(t, name)
		for _, p := range lint(name, script) {
			t.Errorf("%s: %s", name, p)
		}
	}
	_, stop := load(t, StopIntake)
	if !regexp.MustCompile(`(?m)^\s*systemctl stop --no-block gitlab-runner\b`).MatchString(stop) {
		t.Error("stop intake does not run `systemctl stop --no-block gitlab-runner`")
	}
	for _, want := range []string{"KillSignal=SIGQUIT", "TimeoutStopSec=infinity", "systemctl daemon-reload"} {
		if !strings.Contains(stop, want) {
			t.Errorf("stop intake lacks %q (the drop-in making stop graceful and patient)", want)
		}
	}
	_, status := load(t, Status)
	for _, want := range []string{`"running_jobs"`, `"process"`, "gitlab_runner_jobs", "--max-time"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %s", want)
		}
	}
}

// The shell parses (bash -n): a syntax error would only show on a real instance, mid-drain.
func TestDocumentsParse(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash not found: the documents' shell cannot be checked")
	}
	for _, name := range []string{StopIntake, Status, Unregister} {
		_, script := load(t, name)
		cmd := exec.Command(bash, "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: bash -n: %v\n%s", name, err, out)
		}
	}
}

// Every rule must be able to fail.
func TestLintRulesCatchViolations(t *testing.T) {
	cases := []struct {
		name, doc, script, want string
	}{
		{"blocking stop", StopIntake, "systemctl stop gitlab-runner", "blocking"},
		{"blocking restart", StopIntake, "sudo systemctl restart gitlab-runner", "blocking"},
		{"gitlab-runner stop", StopIntake, "gitlab-runner stop", "blocking"},
		{"service stop", StopIntake, "service gitlab-runner stop", "blocking"},
		{"kill -9", StopIntake, "pkill -9 gitlab-runner", "SIGKILL"},
		{"wait loop", StopIntake, "while systemctl is-active gitlab-runner; do sleep 5; done", "waits"},
		{"imdsv1 curl", Status, "id=$(curl -s http://169.254.169.254/latest/meta-data/instance-id)", "IMDSv1"},
		{"imdsv1 wget", Status, "wget -qO- http://169.254.169.254/latest/meta-data/", "IMDSv1"},
		{"unregister unchecked", Unregister, "gitlab-runner unregister --all-runners", "stopped check"},
		{"unregister check without exit", Unregister, "systemctl is-active gitlab-runner\ngitlab-runner unregister --all-runners", "stopped check"},
		{"unregister in stop", StopIntake, "systemctl stop --no-block gitlab-runner\ngitlab-runner unregister --all-runners", "unregister"},
	}
	for _, c := range cases {
		problems := lint(c.doc, c.script)
		found := false
		for _, p := range problems {
			found = found || strings.Contains(p, c.want)
		}
		if !found {
			t.Errorf("%s: lint(%q) = %q, want a problem mentioning %q", c.name, c.script, problems, c.want)
		}
	}
	ok := "state=$(systemctl is-active gitlab-runner || true)\nif [ \"$state\" != inactive ]; then\n  exit 1\nfi\n" +
		"TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')\n" +
		"curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/instance-id\n" +
		"gitlab-runner unregister --all-runners"
	if p := lint(Unregister, ok); len(p) != 0 {
		t.Errorf("lint of a correct script = %q", p)
	}
}

var (
	blockingStop = regexp.MustCompile(`\b(systemctl\s+(stop|restart|kill|try-restart)\b|gitlab-runner\s+(stop|restart)\b|service\s+gitlab-runner\s+(stop|restart)\b)`)
	sigkill      = regexp.MustCompile(`\b(kill|pkill|killall)\b.*(-9\b|-KILL\b|-s\s+KILL\b|SIGKILL)`)
	waitLoop     = regexp.MustCompile(`\b(while|until)\b.*\b(is-active|pgrep|pidof)\b`)
	imdsHost     = regexp.MustCompile(`169\.254\.169\.254|fd00:ec2::254`)
	tokenPut     = regexp.MustCompile(`(-\w*X\s*PUT|--request\s+PUT|--method=PUT)\b.*/latest/api/token|/latest/api/token.*(-\w*X\s*PUT|--request\s+PUT)\b`)
	tokenHeader  = regexp.MustCompile(`X-aws-ec2-metadata-token:`)
	unregister   = regexp.MustCompile(`\bgitlab-runner\s+unregister\b`)
	activeCheck  = regexp.MustCompile(`\bsystemctl\s+is-active\b`)
	failExit     = regexp.MustCompile(`\bexit\s+[1-9]`)
)

// lint returns the problems of one document's shell.
func lint(doc, script string) []string {
	var problems []string
	var sawCheck, sawExitAfterCheck bool
	for i, raw := range strings.Split(script, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := func(format string) string { return "line " + strconv.Itoa(i+1) + ": " + format + ": " + line }
		if m := blockingStop.FindString(line); m != "" && !strings.Contains(line, "--no-block") {
			problems = append(problems, at("blocking stop (use systemctl stop --no-block)"))
		}
		if sigkill.MatchString(line) {
			problems = append(problems, at("SIGKILL kills running jobs"))
		}
		if waitLoop.MatchString(line) {
			problems = append(problems, at("waits for the runner inside the document (the drain watches from outside)"))
		}
		if imdsHost.MatchString(line) && !tokenPut.MatchString(line) && !tokenHeader.MatchString(line) {
			problems = append(problems, at("IMDSv1 (instance metadata without a session token header)"))
		}
		if activeCheck.MatchString(line) {
			sawCheck = true
		}
		if sawCheck && failExit.MatchString(line) {
			sawExitAfterCheck = true
		}
		if unregister.MatchString(line) {
			switch {
			case doc != Unregister:
				problems = append(problems, at("unregister outside the unregister document"))
			case !sawCheck || !sawExitAfterCheck:
				problems = append(problems, at("unregister without a stopped check before it (systemctl is-active … exit 1)"))
			}
		}
	}
	return problems
}
