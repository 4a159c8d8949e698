package messages_test

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/deploy/runner"
	"github.com/runnerfleet/runnerfleet/messages"
)

func intp(n int) *int { return &n }

// TestParseCommandExamples parses every command in testdata/ into the Command it must give, and
// checks that Marshal of that Command parses back to the same value.
func TestParseCommandExamples(t *testing.T) {
	t.Parallel()
	at := mustTime(t, "2026-11-27T17:00:00Z")
	tests := []struct {
		file string
		want messages.Command
	}{
		{"command.json", messages.Command{Schema: 1, ID: "0b7e2c1a-5a8e-4e53-9a8b-2f1c7d2e9a10", IssuedAt: at, Issuer: "alice",
			Fleet: "docker", Type: messages.CommandScale, Scale: &messages.ScaleArgs{Desired: intp(3), For: 2 * time.Hour}}},
		{"commands/tick.json", messages.Command{Schema: 1, ID: "11111111-1111-4111-8111-111111111111", IssuedAt: at,
			Fleet: "docker", Type: messages.CommandTick}},
		{"commands/tick_args.json", messages.Command{Schema: 1, ID: "11111111-1111-4111-8111-111111111112", IssuedAt: at,
			Issuer: "ci", Fleet: "docker", Type: messages.CommandTick, Tick: &messages.TickArgs{}}},
		{"commands/scale_pin.json", messages.Command{Schema: 1, ID: "22222222-2222-4222-8222-222222222222",
			IssuedAt: mustTime(t, "2026-11-27T16:00:00Z"), Issuer: "alice", Fleet: "docker", Type: messages.CommandScale,
			Scale: &messages.ScaleArgs{Desired: intp(0), For: 90 * time.Minute}}},
		{"commands/scale_resume.json", messages.Command{Schema: 1, ID: "22222222-2222-4222-8222-222222222223", IssuedAt: at,
			Fleet: "docker", Type: messages.CommandScale, Scale: &messages.ScaleArgs{Resume: true}}},
		{"commands/drain.json", messages.Command{Schema: 1, ID: "33333333-3333-4333-8333-333333333333",
			IssuedAt: at.Add(123456789 * time.Nanosecond), Fleet: "docker", Type: messages.CommandDrain,
			Drain: &messages.DrainArgs{InstanceID: "i-0123456789abcdef0", Replace: true}}},
		{"commands/cycle.json", messages.Command{Schema: 1, ID: "44444444-4444-4444-8444-444444444444", IssuedAt: at,
			Fleet: "docker", Type: messages.CommandCycle, Cycle: &messages.CycleArgs{MaxUnavailable: 1, Surge: 1, All: true}}},
		{"commands/cycle_abort.json", messages.Command{Schema: 1, ID: "44444444-4444-4444-8444-444444444445", IssuedAt: at,
			Fleet: "docker", Type: messages.CommandCycle, Cycle: &messages.CycleArgs{Abort: true}}},
		{"commands/update.json", messages.Command{Schema: 1, ID: "55555555-5555-4555-8555-555555555555", IssuedAt: at,
			Issuer: "bob", Fleet: "docker", Type: messages.CommandUpdate, Update: &messages.UpdateArgs{
				Parameters: map[string]string{"InstanceType": "t3.large", "RunnerVersion": "17.5.0",
					"RunnerTokenParameter": "/runnerfleet/docker/token"},
				TemplateBody: "AWSTemplateFormatVersion: '2010-09-09'\nResources: {}\n", Plan: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			msg, err := messages.Parse(readTestdata(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if msg.Kind != messages.KindCommand || msg.ID != tt.want.ID || !msg.Time.Equal(tt.want.IssuedAt) || msg.Event != nil {
				t.Errorf("message %+v: want a command with id %s issued %v", msg, tt.want.ID, tt.want.IssuedAt)
			}
			got := msg.Payload.(*messages.Command)
			assertCommand(t, *got, tt.want)

			body, err := got.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			again, err := messages.Parse(body)
			if err != nil {
				t.Fatalf("Parse(Marshal): %v\n%s", err, body)
			}
			assertCommand(t, *again.Payload.(*messages.Command), tt.want)
		})
	}
}

func assertCommand(t *testing.T, got, want messages.Command) {
	t.Helper()
	if !got.IssuedAt.Equal(want.IssuedAt) {
		t.Errorf("IssuedAt = %v, want %v", got.IssuedAt, want.IssuedAt)
	}
	got.IssuedAt, want.IssuedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("command\n got %s\nwant %s", describe(got), describe(want))
	}
}

func describe(c messages.Command) string {
	return fmt.Sprintf("%+v tick=%+v scale=%s drain=%+v cycle=%+v update=%+v", c, deref(c.Tick), scaleString(c.Scale),
		deref(c.Drain), deref(c.Cycle), deref(c.Update))
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func scaleString(a *messages.ScaleArgs) string {
	if a == nil {
		return "nil"
	}
	return fmt.Sprintf("{Desired:%v For:%v Resume:%v}", deref(a.Desired), a.For, a.Resume)
}

func TestNewCommandMarshalsAndParses(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 18, 0, 0, 5, time.FixedZone("CET", 3600))
	for _, typ := range messages.CommandTypes() {
		t.Run(string(typ), func(t *testing.T) {
			c := messages.NewCommand("docker", typ, now)
			if c.Schema != messages.CommandSchema || c.Fleet != "docker" || c.Type != typ || !c.IssuedAt.Equal(now) ||
				c.IssuedAt.Location() != time.UTC || c.ID == "" {
				t.Fatalf("NewCommand = %+v", c)
			}
			switch typ {
			case messages.CommandScale:
				c.Scale.Desired = intp(4)
			case messages.CommandDrain:
				c.Drain.InstanceID = "i-0123456789abcdef0"
			case messages.CommandCycle:
				c.Cycle.Surge = 1
			case messages.CommandUpdate:
				c.Update.Parameters = map[string]string{"InstanceType": "t3.small"}
			}
			body, err := c.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !strings.Contains(string(body), `"kind":"command"`) {
				t.Errorf("body %s lacks \"kind\":\"command\"", body)
			}
			msg, err := messages.Parse(body)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, body)
			}
			assertCommand(t, *msg.Payload.(*messages.Command), c)
		})
	}
	a, b := messages.NewCommand("f", messages.CommandTick, now), messages.NewCommand("f", messages.CommandTick, now)
	if a.ID == b.ID {
		t.Errorf("two commands share the id %s", a.ID)
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	pattern := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := messages.NewID()
		if !pattern.MatchString(id) {
			t.Fatalf("NewID() = %q, not a version-4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
}

const validScale = `{"kind":"command","schema":1,"id":"22222222-2222-4222-8222-222222222222","issued_at":"2026-11-27T17:00:00Z","issuer":"alice","fleet":"docker","type":"scale","scale":{"desired":3}}`

// TestParseCommandMutations: every way a command body can be wrong is refused with a reason that
// names the field.
func TestParseCommandMutations(t *testing.T) {
	t.Parallel()
	update := func(params string) string {
		return `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"docker","type":"update","update":{"parameters":` + params + `}}`
	}
	tests := []struct {
		name   string
		body   string
		reason []string
	}{
		{"unknown top-level field", strings.Replace(validScale, `"fleet"`, `"priority":1,"fleet"`, 1), []string{`unknown field "priority"`}},
		{"unknown args field", strings.Replace(validScale, `"desired":3`, `"desired":3,"min":1`, 1), []string{`unknown field "scale.min"`}},
		{"key in another case", strings.Replace(validScale, `"fleet"`, `"Fleet"`, 1), []string{`"Fleet": member names are case-sensitive (want "fleet")`}},
		{"args key in another case", strings.Replace(validScale, `"desired"`, `"DESIRED"`, 1), []string{`"scale.DESIRED": member names are case-sensitive`}},
		{"event envelope field", strings.Replace(validScale, `"fleet"`, `"detail-type":"x","fleet"`, 1), []string{`unknown field "detail-type"`}},
		{"schema as string", strings.Replace(validScale, `"schema":1`, `"schema":"1"`, 1), []string{`"schema"`, "want an integer, got JSON string"}},
		{"desired as string", strings.Replace(validScale, `"desired":3`, `"desired":"3"`, 1), []string{`"scale.desired"`, "want an integer"}},
		{"desired fractional", strings.Replace(validScale, `"desired":3`, `"desired":2.5`, 1), []string{`"scale.desired"`}},
		{"scale as array", strings.Replace(validScale, `{"desired":3}`, `[3]`, 1), []string{`"scale"`, "want an object"}},
		{"fleet as number", strings.Replace(validScale, `"fleet":"docker"`, `"fleet":7`, 1), []string{`"fleet"`, "want a string"}},
		{"replace as string", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"drain","drain":{"instance_id":"i-0123456789abcdef0","replace":"yes"}}`,
			[]string{`"drain.replace"`, "want true or false"}},
		{"parameters as list", update(`["a"]`), []string{`"update.parameters"`, "want an object"}},
		{"parameter value number", update(`{"InstanceType":3}`), []string{`"update.parameters`, "want a string"}},
		{"no schema", strings.Replace(validScale, `"schema":1,`, ``, 1), []string{`"schema" is missing`}},
		{"newer schema", strings.Replace(validScale, `"schema":1`, `"schema":2`, 1), []string{`"schema": 2 is newer`}},
		{"no id", strings.Replace(validScale, `"id":"22222222-2222-4222-8222-222222222222",`, ``, 1), []string{`"id" is missing`}},
		{"no issued_at", strings.Replace(validScale, `"issued_at":"2026-11-27T17:00:00Z",`, ``, 1), []string{`"issued_at" is missing`}},
		{"bad issued_at", strings.Replace(validScale, `2026-11-27T17:00:00Z`, `yesterday`, 1), []string{`"issued_at"`, "RFC 3339"}},
		{"no fleet", strings.Replace(validScale, `"fleet":"docker",`, ``, 1), []string{`"fleet" is missing`}},
		{"fleet with newline", strings.Replace(validScale, `"fleet":"docker"`, `"fleet":"dock\ner"`, 1), []string{`"fleet" contains control characters`}},
		{"no type", strings.Replace(validScale, `"type":"scale",`, ``, 1), []string{`"type" is missing`}},
		{"unknown type", strings.Replace(validScale, `"type":"scale"`, `"type":"reboot"`, 1), []string{`unknown command type "reboot"`}},
		{"type without args", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"scale"}`,
			[]string{`"scale" is missing`}},
		{"args of another type", strings.Replace(validScale, `"scale":{"desired":3}`, `"scale":{"desired":3},"drain":{"instance_id":"i-0123456789abcdef0"}`, 1),
			[]string{`"drain" does not belong to a command of type "scale"`}},
		{"tick with scale args", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"tick","scale":{"resume":true}}`,
			[]string{`"scale" does not belong`}},
		{"args null", strings.Replace(validScale, `{"desired":3}`, `null`, 1), []string{`"scale" is missing`}},
		{"scale neither", strings.Replace(validScale, `{"desired":3}`, `{}`, 1), []string{`"scale.desired" is missing`}},
		{"scale both", strings.Replace(validScale, `{"desired":3}`, `{"desired":3,"resume":true}`, 1), []string{"exclude each other"}},
		{"scale negative", strings.Replace(validScale, `"desired":3`, `"desired":-1`, 1), []string{`"scale.desired": -1 is negative`}},
		{"scale bad duration", strings.Replace(validScale, `"desired":3`, `"desired":3,"for":"two hours"`, 1), []string{`"scale.for"`, "not a duration"}},
		{"scale negative duration", strings.Replace(validScale, `"desired":3`, `"desired":3,"for":"-5m"`, 1), []string{`"scale.for"`, "negative"}},
		{"drain without instance", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"drain","drain":{}}`,
			[]string{`"drain.instance_id" is missing`}},
		{"drain bad instance", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"drain","drain":{"instance_id":"web-1"}}`,
			[]string{`"drain.instance_id": "web-1" is not an EC2 instance id`}},
		{"cycle negative", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"cycle","cycle":{"surge":-1,"max_unavailable":-2}}`,
			[]string{`"cycle.surge": -1 is negative`, `"cycle.max_unavailable": -2 is negative`}},
		{"cycle abort all", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"cycle","cycle":{"abort":true,"all":true}}`,
			[]string{"exclude each other"}},
		{"parameter key not a name", update(`{"Instance-Type":"t3.large"}`), []string{`key "Instance-Type" is not a CloudFormation parameter name`}},
		{"oversize command", strings.Replace(validScale, `"issuer":"alice"`, `"issuer":"`+strings.Repeat("a", messages.MaxCommandSize)+`"`, 1),
			[]string{"exceeds", "64 KiB"}},
		{"oversize template", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"d","type":"update","update":{"template_body":"` +
			strings.Repeat("a", messages.MaxTemplateBody+1) + `"}}`, []string{`"update.template_body"`, "51200"}},
		{"duplicate problems listed together", `{"kind":"command","schema":1,"type":"drain","drain":{}}`,
			[]string{`"id" is missing`, `"issued_at" is missing`, `"fleet" is missing`, `"drain.instance_id" is missing`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantInvalid(t, []byte(tt.body), tt.reason...)
		})
	}
}

// TestCommandsRefuseTokens: a command never carries a runner token, and the refusal never quotes it.
func TestCommandsRefuseTokens(t *testing.T) {
	t.Parallel()
	const secret = "glrt-t3_CANARYsecretVALUE123"
	update := func(params, template string) string {
		return `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"docker","type":"update","update":{"parameters":` +
			params + `,"template_body":"` + template + `"}}`
	}
	tests := []struct {
		name   string
		body   string
		reason string
	}{
		{"key naming a token", update(`{"RunnerToken":"abc"}`, ""), `"update.parameters.RunnerToken": parameters naming a runner token are refused`},
		{"key naming a token, any case", update(`{"GITLABTOKEN":"abc"}`, ""), `"update.parameters.GITLABTOKEN"`},
		{"glrt value", update(`{"Extra":"`+secret+`"}`, ""), `"update.parameters.Extra": the value looks like a GitLab token`},
		{"glrtr value", update(`{"Extra":"glrtr-abcdef"}`, ""), `contains "glrtr-"`},
		{"registration token value", update(`{"Extra":"GR1348941abcdef"}`, ""), `contains "GR1348941"`},
		{"token in template", update(`{}`, "Token: "+secret), `"update.template_body": the template contains what looks like a GitLab token`},
		{"token as issuer", strings.Replace(validScale, `"issuer":"alice"`, `"issuer":"`+secret+`"`, 1), `"issuer" looks like a GitLab token`},
		// Values a reason would quote: never quoted when they look like a token.
		{"token as instance id", `{"kind":"command","schema":1,"id":"x","issued_at":"2026-11-27T17:00:00Z","fleet":"docker","type":"drain","drain":{"instance_id":"` + secret + `"}}`,
			`"drain.instance_id"`},
		{"token as scale.for", strings.Replace(validScale, `"scale":{"desired":3}`, `"scale":{"desired":3,"for":"`+secret+`"}`, 1), `"scale.for": <redacted`},
		{"token as type", strings.Replace(validScale, `"type":"scale"`, `"type":"`+secret+`"`, 1), `unknown command type <redacted`},
		{"token as parameter key", update(`{"`+secret+`":"x"}`, ""), `a key looks like a GitLab token`},
		{"token as parameter key of letters and digits", update(`{"GR1348941CANARY0123456789":"x"}`, ""), `a key looks like a GitLab token`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := wantInvalid(t, []byte(tt.body), tt.reason)
			if strings.Contains(inv.Reason, "CANARY") || strings.Contains(inv.Error(), "CANARY") {
				t.Errorf("reason quotes the secret: %q", inv.Reason)
			}
		})
	}

	// The same is refused by Marshal, so the publisher never sends it.
	c := messages.NewCommand("docker", messages.CommandUpdate, time.Now())
	c.Update.Parameters = map[string]string{"RunnerToken": secret}
	body, err := c.Marshal()
	var inv *messages.InvalidError
	if !errors.As(err, &inv) || body != nil {
		t.Fatalf("Marshal of a command with a token = %q, %v; want an InvalidError", body, err)
	}
	if strings.Contains(err.Error(), "CANARY") {
		t.Errorf("error quotes the secret: %v", err)
	}

	// Naming the parameter that holds the token is fine.
	c.Update.Parameters = map[string]string{"RunnerTokenParameterName": "/runnerfleet/docker/token", "TokenParameterArn": "arn:aws:ssm:r:1:parameter/x"}
	if _, err := c.Marshal(); err != nil {
		t.Errorf("parameters naming the token's SSM parameter refused: %v", err)
	}
	// A template that names the prefix in its descriptions, as the shipped runner template does
	// ("the runner authentication token (glrt-...)"), carries no token.
	if !strings.Contains(string(runner.Template), "glrt-") {
		t.Fatal("the runner template no longer names the token prefix: this case tests nothing")
	}
	c.Update.Parameters = nil
	c.Update.TemplateBody = string(runner.Template)
	if _, err := c.Marshal(); err != nil {
		t.Errorf("the shipped runner template refused: %v", err)
	}
	c.Update.TemplateBody = ""
	// So is naming the KMS key that encrypts it (the runner template's TokenKmsKeyArn).
	c.Update.Parameters = map[string]string{"TokenKmsKeyArn": "arn:aws:kms:r:1:key/x"}
	if _, err := c.Marshal(); err != nil {
		t.Errorf("the token's KMS key refused: %v", err)
	}
}

func TestMarshalRefusesInvalidCommands(t *testing.T) {
	t.Parallel()
	c := messages.NewCommand("docker", messages.CommandScale, time.Now()) // neither desired nor resume
	if b, err := c.Marshal(); err == nil || b != nil {
		t.Errorf("Marshal of an incomplete scale = %s, %v", b, err)
	}
	c = messages.NewCommand("", messages.CommandTick, time.Now())
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `"fleet" is missing`) {
		t.Errorf("Validate without fleet = %v", err)
	}
	c = messages.NewCommand("docker", messages.CommandTick, time.Time{})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `"issued_at" is missing`) {
		t.Errorf("Validate without issue time = %v", err)
	}
}
