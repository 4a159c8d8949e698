package properties

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func small(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseKeepsDataAsData(t *testing.T) {
	in := "# comment\n\n  Name = abc \nVolumeSize=\"20\"\nCmd=$(rm -rf /)\n\ufeffX\nA=b=c\n=v\nName=again\nbad-key=1\n"
	entries, ps := Parse(strings.NewReader(in))
	got := map[string]string{}
	for _, e := range entries {
		got[e.Key] = e.Value
	}
	if got["Name"] != "abc" || got["VolumeSize"] != "20" || got["Cmd"] != "$(rm -rf /)" || got["A"] != "b=c" {
		t.Errorf("entries = %v", got)
	}
	want := []int{6, 8, 9, 10}
	if len(ps) != len(want) {
		t.Fatalf("problems = %v, want lines %v", ps, want)
	}
	for i, p := range ps {
		if p.Line != want[i] {
			t.Errorf("problem %d on line %d, want %d: %s", i, p.Line, want[i], p.Msg)
		}
	}
}

func TestLoadListsEveryProblemWithItsLine(t *testing.T) {
	file := strings.Join([]string{
		"# three mistakes and more",
		"Colour=blue",              // 2 unknown
		"VolumeSize=lots",          // 3 not a number
		"just some words",          // 4 not Key=Value
		"InstanceType=m5.24xlarge", // 5 not allowed
		"Name=ABC123456789",        // 6 pattern + max length
		"Subnets=subnet-1,vpc-2",   // 7 wrong id type
		"Secret=hunter2",           // 8 pattern, value hidden
		"VolumeSize=1",             // 9 set again
		"RunnersToken=glrt-canary", // 10 legacy: replaced
	}, "\n")
	_, err := Load(strings.NewReader(file), small(t), Options{RequireAll: true, Legacy: map[string]Legacy{
		"RunnersToken": {Note: "use the SecureString parameter named by TokenParameterName"},
	}})
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v, want Problems", err)
	}
	lines := map[int][]string{}
	for _, p := range ps {
		lines[p.Line] = append(lines[p.Line], p.Msg)
	}
	for _, l := range []int{2, 3, 4, 5, 7, 8, 9, 10} {
		if len(lines[l]) == 0 {
			t.Errorf("no problem on line %d; got %v", l, ps)
		}
	}
	if len(lines[6]) != 2 {
		t.Errorf("line 6: %v, want pattern and MaxLength", lines[6])
	}
	if !strings.Contains(strings.Join(lines[3], ""), "not a number") {
		t.Errorf("line 3: %v", lines[3])
	}
	if !strings.Contains(strings.Join(lines[10], ""), "SecureString") {
		t.Errorf("line 10: %v", lines[10])
	}
	msg := err.Error()
	for _, secret := range []string{"hunter2", "glrt-canary"} {
		if strings.Contains(msg, secret) {
			t.Errorf("problems quote the secret %q:\n%s", secret, msg)
		}
	}
	if len(ps) != 10 {
		t.Errorf("%d problems, want 10: %v", len(ps), ps)
	}
}

func TestLoadAcceptsAGoodFileAndMapsLegacyKeys(t *testing.T) {
	file := "InstanceType=t3.small\nDiskGiB=30\nName=abc\n"
	res, err := Load(strings.NewReader(file), small(t), Options{RequireAll: true, Legacy: map[string]Legacy{
		"DiskGiB": {Parameter: "VolumeSize", Note: "renamed"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Values["VolumeSize"] != "30" || res.Values["InstanceType"] != "t3.small" || len(res.Values) != 3 {
		t.Errorf("values = %v", res.Values)
	}
	if len(res.Notes) != 1 || res.Notes[0].Line != 2 {
		t.Errorf("notes = %v", res.Notes)
	}
}

func TestMissingRequiredOnlyWhenCreating(t *testing.T) {
	if _, err := Load(strings.NewReader("VolumeSize=9\n"), small(t), Options{}); err != nil {
		t.Errorf("update: %v", err)
	}
	_, err := Load(strings.NewReader("VolumeSize=9\n"), small(t), Options{RequireAll: true})
	if err == nil || !strings.Contains(err.Error(), "missing required parameter Name") {
		t.Errorf("create: %v", err)
	}
}

func TestTheRunnerTemplateAndOurSampleFile(t *testing.T) {
	tmpl, err := os.ReadFile("../../deploy/runner/runner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	params, err := ParseTemplate(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	names, err := ParameterNames(tmpl)
	if err != nil || len(names) != len(params) || names[0] > names[1] {
		t.Errorf("names %v, err %v", names, err)
	}
	if p := params["VolumeSize"]; p == nil || p.Type != "Number" || p.MinValue == nil || *p.MinValue != 8 {
		t.Fatalf("VolumeSize = %+v", p)
	}
	f, err := os.Open("../../configs/sample-runner.properties")
	if err != nil {
		t.Fatalf("the shipped sample properties file: %v", err) // the README's deploy steps start from it
	}
	defer f.Close()
	_, err = Load(f, tmpl, Options{RequireAll: true})
	// The sample leaves the runner checksums empty on purpose: exactly those are refused.
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	for _, p := range ps {
		if !strings.Contains(p.Msg, "RunnerSha256") {
			t.Errorf("unexpected problem: %s", p)
		}
	}
}
