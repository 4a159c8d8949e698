package properties

import (
	"errors"
	"os"
	"reflect"
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

// CR-only line endings would join the file into one entry whose value holds the rest; an
// unclosed quote would be sent verbatim. Both are problems, on their lines, with the others, and
// never quote the value.
func TestParseRefusesCROnlyLinesAndUnclosedQuotes(t *testing.T) {
	tests := []struct {
		name, in string
		lines    []int
		want     string
	}{
		{"CR-only file", "A=1\rB=2\rC=3", []int{1}, "CR-only line endings"},
		{"CR-only after a comment", "# settings\rA=1\rB=2\n", []int{1}, "3 lines joined"},
		{"CR-only line among others", "A=1\nB=2\rC=3\r\nD=4\r\n", []int{2}, "carriage return"},
		{"unclosed single quote", "A='x\"\nB=2\n", []int{1}, "A: the value opens a single quote it does not close"},
		{"unclosed double quote", "A=ok\nB=\"glrt-canary\n", []int{2}, "B: the value opens a double quote"},
		{"lone quote", "A='\n", []int{1}, "single quote"},
		{"both, and more", "A='x\nbad line\nB=1\rC=2\nD=\"y'\n", []int{1, 2, 3, 4}, "quote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries, ps := Parse(strings.NewReader(tc.in))
			var lines []int
			for _, p := range ps {
				lines = append(lines, p.Line)
				if strings.Contains(p.Msg, "glrt-") || strings.Contains(p.Msg, "x\"") {
					t.Errorf("a problem quotes the value: %s", p)
				}
			}
			if !reflect.DeepEqual(lines, tc.lines) || !strings.Contains(ps.Error(), tc.want) {
				t.Errorf("problems %v, want lines %v and %q", ps, tc.lines, tc.want)
			}
			for _, e := range entries {
				if strings.ContainsAny(e.Value, "\r'\"") {
					t.Errorf("entry %+v kept", e)
				}
			}
		})
	}
	// Matching quotes are still removed; a quote inside or at the end alone is data.
	entries, ps := Parse(strings.NewReader("A='x'\nB=\"y\"\nC=it's\nD=''\n"))
	got := map[string]string{}
	for _, e := range entries {
		got[e.Key] = e.Value
	}
	if len(ps) != 0 || !reflect.DeepEqual(got, map[string]string{"A": "x", "B": "y", "C": "it's", "D": ""}) {
		t.Errorf("entries %v, problems %v", got, ps)
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
