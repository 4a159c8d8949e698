package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// A CloudFormation template parsed as plain data: maps, slices, strings, numbers, bools. Short
// intrinsic tags are expanded to their long form (!Ref x → {"Ref": "x"}, !Sub s → {"Fn::Sub": s},
// !GetAtt a.b → {"Fn::GetAtt": ["a", "b"]}), so checks see what CloudFormation sees.
type tmpl = map[string]any

// Paths of the templates, relative to this package.
const (
	runnerPath = "runner.yaml"
	workerPath = "../ecs/worker.yaml"
)

func loadTemplate(t testing.TB, path string) tmpl {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	m, err := parseTemplate(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func parseTemplate(b []byte) (tmpl, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing yaml: %w", err)
	}
	if len(doc.Content) != 1 {
		return nil, fmt.Errorf("want one yaml document, got %d", len(doc.Content))
	}
	v, err := plain(doc.Content[0])
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("template is a %T, not a mapping", v)
	}
	return m, nil
}

func plain(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.AliasNode:
		return plain(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			val, err := plain(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			val, err := plain(c)
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		v = s
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			i, err := strconv.ParseInt(n.Value, 0, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n.Line, err)
			}
			v = i
		case "!!float":
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n.Line, err)
			}
			v = f
		case "!!bool":
			v = n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
		case "!!null":
			v = nil
		default:
			v = n.Value
		}
	default:
		return nil, fmt.Errorf("line %d: unexpected yaml node kind %v", n.Line, n.Kind)
	}
	tag := n.Tag
	if !strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "!!") {
		return v, nil
	}
	switch name := tag[1:]; name {
	case "Ref", "Condition":
		return map[string]any{name: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			return map[string]any{"Fn::GetAtt": []any{res, attr}}, nil
		}
		return map[string]any{"Fn::GetAtt": v}, nil
	default:
		return map[string]any{"Fn::" + name: v}, nil
	}
}

// resources returns the template's resources of type typ, by logical id.
func resources(m tmpl, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	rs, _ := m["Resources"].(map[string]any)
	for id, r := range rs {
		rm, _ := r.(map[string]any)
		if rm["Type"] == typ {
			out[id] = rm
		}
	}
	return out
}

// props returns a resource's Properties.
func props(r map[string]any) map[string]any {
	p, _ := r["Properties"].(map[string]any)
	return p
}

// path walks maps by key and slices by index ("0", "1", ...); nil when absent.
func path(v any, keys ...string) any {
	for _, k := range keys {
		switch c := v.(type) {
		case map[string]any:
			v = c[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

// list returns v as a slice (a lone value as a one-element slice).
func list(v any) []any {
	switch c := v.(type) {
	case nil:
		return nil
	case []any:
		return c
	default:
		return []any{c}
	}
}

// deepCopy copies a parsed template so a test may break it.
func deepCopy(v any) any {
	switch c := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(c))
		for k, x := range c {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		s := make([]any, len(c))
		for i, x := range c {
			s[i] = deepCopy(x)
		}
		return s
	default:
		return v
	}
}

// templatePaths lists every CloudFormation template of deploy/.
func templatePaths(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{".", "../ecs"} {
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".json")) {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(out) < 2 {
		t.Fatalf("found templates %v, want the runner and worker stacks at least", out)
	}
	return out
}
