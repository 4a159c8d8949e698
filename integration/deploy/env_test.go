package deploy

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/runnerfleet/runnerfleet/infra/config"
)

// The worker stack's task sets RUNNERFLEET_* variables; the worker's config loader must read them
// as the template means them (its queues, its shutdown budget), on top of the config in the SSM
// parameter.
func TestTaskEnvironmentReachesTheConfig(t *testing.T) {
	body, err := WorkerTemplate()
	if err != nil {
		t.Fatal(err)
	}
	env := taskEnvironment(t, body)
	// What the stack's Refs resolve to, as a deployed task would see them.
	resolved := map[string]string{
		"RUNNERFLEET_QUEUES_LIFECYCLE_NAME":        "https://sqs.eu-west-1.amazonaws.com/123456789012/runnerfleet-prod-lifecycle",
		"RUNNERFLEET_QUEUES_LIFECYCLE_DEAD_LETTER": "https://sqs.eu-west-1.amazonaws.com/123456789012/runnerfleet-prod-lifecycle-dlq",
		"RUNNERFLEET_QUEUES_CONTROL_NAME":          "https://sqs.eu-west-1.amazonaws.com/123456789012/runnerfleet-prod-control.fifo",
		"RUNNERFLEET_QUEUES_CONTROL_DEAD_LETTER":   "https://sqs.eu-west-1.amazonaws.com/123456789012/runnerfleet-prod-control-dlq.fifo",
		"RUNNERFLEET_QUEUES_STEPS_NAME":            "https://sqs.eu-west-1.amazonaws.com/123456789012/runnerfleet-prod-steps",
		"RUNNERFLEET_QUEUES_STEPS_DEAD_LETTER":     "https://sqs.eu-west-1.amazonaws.com/123456789012/runnerfleet-prod-steps-dlq",
		"RUNNERFLEET_REGION":                       "eu-west-1",
	}
	for k, v := range env {
		if v != "" {
			resolved[k] = v
		}
	}
	for k := range resolved {
		if _, ok := env[k]; !ok {
			t.Errorf("the task sets no %s", k)
		}
	}
	example, err := os.ReadFile("../../configs/worker.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(example, config.Source{Getenv: func(k string) string { return resolved[k] }})
	if err != nil {
		t.Fatalf("the example config with the task's environment: %v", err)
	}
	if cfg.Queues.Lifecycle.Name != resolved["RUNNERFLEET_QUEUES_LIFECYCLE_NAME"] || cfg.Queues.Control.Name != resolved["RUNNERFLEET_QUEUES_CONTROL_NAME"] ||
		cfg.Queues.Lifecycle.DeadLetter != resolved["RUNNERFLEET_QUEUES_LIFECYCLE_DEAD_LETTER"] || cfg.Queues.Control.DeadLetter != resolved["RUNNERFLEET_QUEUES_CONTROL_DEAD_LETTER"] {
		t.Errorf("queues %+v", cfg.Queues)
	}
	if f := cfg.Queues.FollowUps(); f.Name != resolved["RUNNERFLEET_QUEUES_STEPS_NAME"] || f.DeadLetter != resolved["RUNNERFLEET_QUEUES_STEPS_DEAD_LETTER"] {
		t.Errorf("follow-ups go to %+v, want the stack's steps queue", f)
	}
	if cfg.Region != "eu-west-1" {
		t.Errorf("region %q", cfg.Region)
	}
	want, _ := time.ParseDuration(env["RUNNERFLEET_STOP_TIMEOUT"])
	if want == 0 || cfg.StopTimeout != want {
		t.Errorf("stop timeout %v, the task says %q", cfg.StopTimeout, env["RUNNERFLEET_STOP_TIMEOUT"])
	}
	// Variables the config does not read yet (RUNNERFLEET_STATE_TABLE,
	// RUNNERFLEET_CLOUDFORMATION_ROLE_ARN) are ignored by the loader, not errors.
	for k := range env {
		if _, ok := resolved[k]; !ok && k != "RUNNERFLEET_STOP_TIMEOUT" && k != "RUNNERFLEET_CONFIG_PARAMETER" {
			t.Logf("%s: not a config key yet (ignored by the loader)", k)
		}
	}
}

// taskEnvironment returns the worker container's environment, values as written when literal
// ("" when an intrinsic function computes them).
func taskEnvironment(t *testing.T, body string) map[string]string {
	t.Helper()
	var doc struct {
		Resources map[string]struct {
			Type       string    `yaml:"Type"`
			Properties yaml.Node `yaml:"Properties"`
		} `yaml:"Resources"`
	}
	if err := yaml.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("parsing the worker template: %v", err)
	}
	var td struct {
		ContainerDefinitions []struct {
			Environment []struct {
				Name  string    `yaml:"Name"`
				Value yaml.Node `yaml:"Value"`
			} `yaml:"Environment"`
		} `yaml:"ContainerDefinitions"`
	}
	r, ok := doc.Resources["TaskDefinition"]
	if !ok {
		t.Fatal("no TaskDefinition")
	}
	if err := r.Properties.Decode(&td); err != nil || len(td.ContainerDefinitions) != 1 {
		t.Fatalf("task definition: %v", err)
	}
	env := map[string]string{}
	for _, e := range td.ContainerDefinitions[0].Environment {
		v := ""
		if e.Value.Kind == yaml.ScalarNode && !strings.HasPrefix(e.Value.Tag, "!") || e.Value.Tag == "!!str" {
			v = e.Value.Value
		}
		env[e.Name] = v
	}
	return env
}
