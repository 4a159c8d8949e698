package runner

import (
	"bufio"
	"os"
	"sort"
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
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for k := range SampleKeys {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/deploy.md does not mention `%s`", k)
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
