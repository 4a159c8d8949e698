package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Environment variables read by Load.
const (
	// EnvPrefix prefixes the environment override of every key outside fleets: RUNNERFLEET_<KEY>
	// with dots as underscores (RUNNERFLEET_STOP_TIMEOUT, RUNNERFLEET_QUEUES_CONTROL_NAME).
	EnvPrefix = "RUNNERFLEET"
	// EnvFile names the config file when no --config flag is given.
	EnvFile = "RUNNERFLEET_CONFIG"
	// EnvParameter names an SSM parameter holding the YAML config, used when no file is named
	// (how the ECS task gets its config).
	EnvParameter = "RUNNERFLEET_CONFIG_PARAMETER"
)

// envKeys are the keys with RUNNERFLEET_<KEY> overrides: every key outside fleets (per-fleet
// settings live in the file).
var envKeys = []string{
	"region", "endpoint", "loopback_only", "listen", "log_level", "stop_timeout", "state_table", "sweep_interval", "drain_step_concurrency",
	"cloudformation_role_arn", "command_max_age",
	"handler.timeout", "handler.retry.max_retries", "handler.retry.initial_interval",
	"handler.retry.max_interval", "handler.retry.multiplier",
	"queues.lifecycle.name", "queues.lifecycle.dead_letter", "queues.lifecycle.visibility_timeout",
	"queues.lifecycle.max_hold", "queues.lifecycle.max_in_flight", "queues.lifecycle.nack_backoff",
	"queues.control.name", "queues.control.dead_letter", "queues.control.visibility_timeout",
	"queues.control.max_hold", "queues.control.max_in_flight", "queues.control.nack_backoff",
	"queues.steps.name", "queues.steps.dead_letter", "queues.steps.visibility_timeout",
	"queues.steps.max_hold", "queues.steps.max_in_flight", "queues.steps.nack_backoff",
}

// flagKeys maps flag names (as AddFlags defines them) to keys.
var flagKeys = map[string]string{
	"region":        "region",
	"endpoint":      "endpoint",
	"listen":        "listen",
	"log-level":     "log_level",
	"stop-timeout":  "stop_timeout",
	"loopback-only": "loopback_only",
}

// AddFlags defines the flags that override top-level keys, plus --config (the file).
func AddFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML config file (default $"+EnvFile+"; else the SSM parameter named by $"+EnvParameter+")")
	fs.String("region", "", "AWS region (key region; default $AWS_REGION)")
	fs.String("endpoint", "", "AWS endpoint URL of every service (key endpoint; default $AWS_ENDPOINT_URL)")
	fs.String("listen", "", "address of /metrics, /healthz and /readyz (key listen; default "+DefaultListen+")")
	fs.String("log-level", "", "debug, info, warn or error (key log_level)")
	fs.Duration("stop-timeout", 0, "time from SIGTERM to exit (key stop_timeout; default 30s)")
	fs.Bool("loopback-only", false, "refuse every connection outside 127.0.0.0/8 (key loopback_only)")
}

// ParameterAPI is the SSM call Load makes to read the config from a parameter.
type ParameterAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// Source says where Load reads the configuration.
type Source struct {
	// File is a YAML file; when empty, the flag --config, then $RUNNERFLEET_CONFIG.
	File string
	// Parameter is an SSM parameter holding the YAML, used when no file is named; when empty,
	// $RUNNERFLEET_CONFIG_PARAMETER.
	Parameter string
	// SSM reads Parameter; required when the config comes from a parameter.
	SSM ParameterAPI
	// Flags, when set, override keys (see AddFlags); only flags set on the command line count.
	Flags *pflag.FlagSet
	// Getenv reads the environment (os.Getenv when nil).
	Getenv func(string) string
}

// Location says where the configuration comes from: a file path, "ssm:NAME", or "" for none.
func (s Source) Location() string {
	getenv := s.getenv()
	if s.File != "" {
		return s.File
	}
	if s.Flags != nil {
		if f := s.Flags.Lookup("config"); f != nil && f.Value.String() != "" {
			return f.Value.String()
		}
	}
	if f := getenv(EnvFile); f != "" {
		return f
	}
	if p := s.Parameter; p != "" {
		return "ssm:" + p
	}
	if p := getenv(EnvParameter); p != "" {
		return "ssm:" + p
	}
	return ""
}

func (s Source) getenv() func(string) string {
	if s.Getenv != nil {
		return s.Getenv
	}
	return os.Getenv
}

// NeedsSSM reports whether Load will read an SSM parameter (so the caller must set Source.SSM).
func (s Source) NeedsSSM() bool { return strings.HasPrefix(s.Location(), "ssm:") }

// Load reads, defaults and validates the configuration. Its error lists every problem: unknown
// keys (typos), values of the wrong type, and what Validate finds.
func Load(ctx context.Context, src Source) (*Config, error) {
	loc := src.Location()
	if loc == "" {
		return nil, fmt.Errorf("no configuration: pass --config FILE, or set %s or %s", EnvFile, EnvParameter)
	}
	data, err := read(ctx, src, loc)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data, src)
	if err != nil {
		return nil, fmt.Errorf("configuration %s:\n%w", loc, err)
	}
	return cfg, nil
}

func read(ctx context.Context, src Source, loc string) ([]byte, error) {
	if name, ok := strings.CutPrefix(loc, "ssm:"); ok {
		if src.SSM == nil {
			return nil, fmt.Errorf("reading the configuration from SSM parameter %s: no SSM client", name)
		}
		out, err := src.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("reading the configuration from SSM parameter %s: %w", name, err)
		}
		if out.Parameter == nil {
			return nil, fmt.Errorf("reading the configuration from SSM parameter %s: no value", name)
		}
		return []byte(aws.ToString(out.Parameter.Value)), nil
	}
	data, err := os.ReadFile(loc)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration: %w", err)
	}
	return data, nil
}

// Parse decodes YAML data with the environment and flags of src applied, then defaults and
// validates it. The error joins every problem found.
func Parse(data []byte, src Source) (*Config, error) {
	// Message kinds contain dots ("drain.step") and are map keys (handler.timeouts), so viper's
	// key paths use "::" instead of its default ".".
	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelimiter))
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	// Zero is a valid max_retries, so its default cannot come from setDefaults.
	v.SetDefault(path("handler.retry.max_retries"), DefaultRetryMax)
	getenv := src.getenv()
	for _, k := range envKeys {
		env := EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
		if val := getenv(env); val != "" {
			v.Set(path(k), val)
		}
	}
	if src.Flags != nil {
		for name, key := range flagKeys {
			if f := src.Flags.Lookup(name); f != nil && f.Changed {
				v.Set(path(key), f.Value.String())
			}
		}
	}
	var cfg Config
	var errs []error
	hooks := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(unitlessDuration,
		mapstructure.StringToTimeDurationHookFunc(), mapstructure.StringToSliceHookFunc(","))) // viper's own two
	if err := v.UnmarshalExact(&cfg, hooks); err != nil {
		errs = append(errs, decodeProblems(err)...)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// unitlessDuration refuses a bare number where a duration is wanted: YAML's `hook_timeout: 1800`
// (the stack's HookTimeout output is in seconds) would decode as 1800 ns. 0 is 0 in any unit.
func unitlessDuration(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[time.Duration]() {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		if reflect.ValueOf(data).IsZero() {
			return data, nil
		}
		return nil, fmt.Errorf("%v has no unit: write a duration such as %vs or 30m", data, data)
	}
	return data, nil
}

// decodeProblems splits mapstructure's aggregated error into one problem per line.
func decodeProblems(err error) []error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		out = append(out, errors.New(strings.TrimSpace(line)))
	}
	if len(out) == 0 {
		out = append(out, err)
	}
	return out
}

// Bootstrap are the settings needed before the configuration is read: how to reach SSM when the
// configuration lives in a parameter. They come from the same flags and RUNNERFLEET_<KEY>
// variables that override region, endpoint and loopback_only.
type Bootstrap struct {
	Region       string
	Endpoint     string
	LoopbackOnly bool
}

// Bootstrap returns the region, endpoint and loopback_only given by flags or the environment.
func (s Source) Bootstrap() Bootstrap {
	getenv := s.getenv()
	value := func(flag, key string) string {
		if s.Flags != nil {
			if f := s.Flags.Lookup(flag); f != nil && f.Changed {
				return f.Value.String()
			}
		}
		return getenv(EnvPrefix + "_" + strings.ToUpper(key))
	}
	loopback, _ := strconv.ParseBool(value("loopback-only", "loopback_only"))
	return Bootstrap{Region: value("region", "region"), Endpoint: value("endpoint", "endpoint"), LoopbackOnly: loopback}
}

const keyDelimiter = "::"

// path turns a dotted key of this package ("handler.retry.max_retries") into a viper key path.
func path(key string) string { return strings.ReplaceAll(key, ".", keyDelimiter) }
