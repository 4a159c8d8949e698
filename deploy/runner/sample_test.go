package runner

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The AWS sample's sample-runner.properties, key by key (its values do not matter here).
var awsSampleProperties = []string{
	"VpcID", "SubnetIds", "ImageId", "InstanceType", "InstanceName", "VolumeSize", "VolumeType",
	"MaxSize", "MinSize", "DesiredCapacity", "MaxBatchSize", "MinInstancesInService",
	"MaxInstanceLifetime", "GitlabServerURL", "DockerImagePath", "RunnersToken", "RunnerVersion",
	"RunnerEnvironment", "LambdaS3Bucket", "Concurrent", "CheckInterval", "CostCenter", "AppId",
}

// ... and the sample template's parameters that its properties file does not set.
var awsSampleTemplateOnly = []string{
	"RunnerRegistrationTokens", "TimeStamp", "ScaleInCoolDownInSeconds", "CountOfNewJobsBeforeScaling",
}

func TestEverySampleKeyIsAccountedFor(t *testing.T) {
	params, _ := loadTemplate(t, runnerPath)["Parameters"].(map[string]any)
	for _, k := range append(append([]string{}, awsSampleProperties...), awsSampleTemplateOnly...) {
		sk, ok := SampleKeys[k]
		switch {
		case !ok:
			t.Errorf("%s: not in SampleKeys", k)
		case sk.Parameter != "" && params[sk.Parameter] == nil:
			t.Errorf("%s maps to %s, which the template does not have", k, sk.Parameter)
		case sk.Parameter == "" && sk.Note == "":
			t.Errorf("%s is dropped without a reason", k)
		}
	}
	if len(SampleKeys) != len(awsSampleProperties)+len(awsSampleTemplateOnly) {
		t.Errorf("SampleKeys has %d keys, the sample %d", len(SampleKeys), len(awsSampleProperties)+len(awsSampleTemplateOnly))
	}
	// The deploy guide lists each one.
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for k := range SampleKeys {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("README.md does not mention `%s`", k)
		}
	}
}

// leftEmpty are the keys our sample leaves empty on purpose: the operator must paste them.
var leftEmpty = map[string]bool{"RunnerSha256Amd64": true, "RunnerSha256Arm64": true}

// fits checks a value against a parameter's type and constraints (the patterns of our template
// are plain enough for Go's regexp).
func fits(p map[string]any, v string) error {
	if av := list(p["AllowedValues"]); len(av) > 0 {
		ok := false
		for _, a := range av {
			ok = ok || fmt.Sprint(a) == v
		}
		if !ok {
			return fmt.Errorf("not one of %v", av)
		}
	}
	if pat, ok := p["AllowedPattern"].(string); ok && !regexp.MustCompile(pat).MatchString(v) {
		return fmt.Errorf("does not match %s", pat)
	}
	if p["Type"] == "Number" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		if lo, ok := p["MinValue"].(int64); ok && f < float64(lo) {
			return fmt.Errorf("below %d", lo)
		}
		if hi, ok := p["MaxValue"].(int64); ok && f > float64(hi) {
			return fmt.Errorf("above %d", hi)
		}
	}
	return nil
}

func TestFitsCatchesBadValues(t *testing.T) {
	params, _ := loadTemplate(t, runnerPath)["Parameters"].(map[string]any)
	for k, v := range map[string]string{
		"VolumeType": "gp2", "Concurrent": "two", "OnDemandPercentage": "150", "MinSize": "0",
		"GitlabRunnerVersion": "v15.11.0", "TokenParameterName": "runner-token", "ControlQueueArn": "arn:aws:sqs:eu-west-1:123456789012:other.fifo",
	} {
		if fits(params[k].(map[string]any), v) == nil {
			t.Errorf("%s=%s accepted", k, v)
		}
	}
}

func TestOurSamplePropertiesFitTheTemplate(t *testing.T) {
	params, _ := loadTemplate(t, runnerPath)["Parameters"].(map[string]any)
	f, err := os.Open("../../configs/sample-runner.properties")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("line %d: not Key=Value", n)
			continue
		}
		if params[k] == nil {
			t.Errorf("line %d: %s is not a parameter of runner.yaml", n, k)
		}
		if seen[k] {
			t.Errorf("line %d: %s repeated", n, k)
		}
		seen[k] = true
		_, v, _ := strings.Cut(line, "=")
		if leftEmpty[k] && v == "" {
			continue
		}
		if p, ok := params[k].(map[string]any); ok {
			if err := fits(p, v); err != nil {
				t.Errorf("line %d: %s=%s: %v", n, k, v, err)
			}
		}
	}
	var missing []string
	for name, p := range params {
		if path(p, "Default") == nil && !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("required parameters missing from the sample: %v", missing)
	}
}
