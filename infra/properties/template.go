package properties

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Parameter is one entry of a template's Parameters section: what Check validates a value
// against.
type Parameter struct {
	Name string
	// Type is CloudFormation's parameter type: String, Number, List<Number>, CommaDelimitedList,
	// an AWS-specific type (AWS::EC2::VPC::Id, List<AWS::EC2::Subnet::Id>, …) or an SSM type.
	Type string
	// Default is nil when the parameter has none ("" is a default).
	Default        *string
	AllowedValues  []string
	AllowedPattern string
	MinValue       *float64
	MaxValue       *float64
	MinLength      *int
	MaxLength      *int
	NoEcho         bool
	Description    string

	pattern *regexp.Regexp
}

// ParseTemplate reads the Parameters section of a CloudFormation template, YAML or JSON (short
// tags such as !Ref elsewhere in the template are fine). It fails on a template that is not
// YAML/JSON, whose Parameters are not a mapping, or whose AllowedPattern does not compile.
func ParseTemplate(template []byte) (map[string]*Parameter, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(template, &doc); err != nil {
		return nil, fmt.Errorf("reading the template: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("reading the template: not a mapping at the top")
	}
	params := map[string]*Parameter{}
	section := lookup(doc.Content[0], "Parameters")
	if section == nil {
		return params, nil
	}
	if section.Kind != yaml.MappingNode {
		return nil, errors.New("reading the template: Parameters is not a mapping")
	}
	var errs []error
	for i := 0; i+1 < len(section.Content); i += 2 {
		name, body := section.Content[i].Value, section.Content[i+1]
		p, err := parameterOf(name, body)
		if err != nil {
			errs = append(errs, fmt.Errorf("template parameter %s: %w", name, err))
			continue
		}
		params[name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("reading the template: %w", err)
	}
	return params, nil
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func parameterOf(name string, body *yaml.Node) (*Parameter, error) {
	if body.Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping")
	}
	p := &Parameter{Name: name, Type: "String"}
	var errs []error
	num := func(field string, n *yaml.Node) *float64 {
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not a number", field, n.Value))
			return nil
		}
		return &f
	}
	integer := func(field string, n *yaml.Node) *int {
		v, err := strconv.Atoi(n.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not an integer", field, n.Value))
			return nil
		}
		return &v
	}
	for i := 0; i+1 < len(body.Content); i += 2 {
		k, v := body.Content[i].Value, body.Content[i+1]
		switch k {
		case "Type":
			p.Type = v.Value
		case "Default":
			s := v.Value
			if v.Kind == yaml.SequenceNode {
				parts := make([]string, len(v.Content))
				for j, c := range v.Content {
					parts[j] = c.Value
				}
				s = strings.Join(parts, ",")
			}
			p.Default = &s
		case "AllowedValues":
			for _, c := range v.Content {
				p.AllowedValues = append(p.AllowedValues, c.Value)
			}
		case "AllowedPattern":
			p.AllowedPattern = v.Value
		case "MinValue":
			p.MinValue = num(k, v)
		case "MaxValue":
			p.MaxValue = num(k, v)
		case "MinLength":
			p.MinLength = integer(k, v)
		case "MaxLength":
			p.MaxLength = integer(k, v)
		case "NoEcho":
			p.NoEcho = v.Value == "true" || v.Value == "True"
		case "Description":
			p.Description = v.Value
		}
	}
	if p.AllowedPattern != "" {
		// CloudFormation matches the whole value: anchor it.
		re, err := regexp.Compile(`^(?:` + p.AllowedPattern + `)$`)
		if err != nil {
			errs = append(errs, fmt.Errorf("AllowedPattern does not compile: %w", err))
		}
		p.pattern = re
	}
	return p, errors.Join(errs...)
}

// ParameterNames returns the names of a template's parameters, sorted (the update handler's
// TemplateParameters).
func ParameterNames(template []byte) ([]string, error) {
	ps, err := ParseTemplate(template)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ps))
	for n := range ps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// awsIDPrefixes are the id prefixes of the AWS-specific parameter types CloudFormation checks
// against the account; here only their shape is checked.
var awsIDPrefixes = map[string]string{
	"AWS::EC2::VPC::Id":           "vpc-",
	"AWS::EC2::Subnet::Id":        "subnet-",
	"AWS::EC2::SecurityGroup::Id": "sg-",
	"AWS::EC2::Image::Id":         "ami-",
	"AWS::EC2::Instance::Id":      "i-",
	"AWS::EC2::Volume::Id":        "vol-",
}

// check returns what is wrong with value for p (nil when it fits). hide keeps the value out of
// the messages.
func (p *Parameter) check(value string, hide bool) []string {
	show := func() string {
		if hide {
			return "the value (not shown)"
		}
		return safeQuote(value)
	}
	var probs []string
	elemType, isList := strings.CutPrefix(p.Type, "List<")
	elemType = strings.TrimSuffix(elemType, ">")
	switch {
	case p.Type == "CommaDelimitedList":
		isList, elemType = true, "String"
	case strings.HasPrefix(p.Type, "AWS::SSM::Parameter::"):
		isList, elemType = false, "String"
	case !isList:
		elemType = p.Type
	}
	values := []string{value}
	if isList {
		values = strings.Split(value, ",")
		if value == "" {
			values = nil
		}
	}
	for _, v := range values {
		v := strings.TrimSpace(v)
		switch {
		case elemType == "Number":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				probs = append(probs, fmt.Sprintf("%s is not a number (type %s)", show(), p.Type))
				continue
			}
			if p.MinValue != nil && f < *p.MinValue {
				probs = append(probs, fmt.Sprintf("%s is below MinValue %s", show(), fmtNum(*p.MinValue)))
			}
			if p.MaxValue != nil && f > *p.MaxValue {
				probs = append(probs, fmt.Sprintf("%s is above MaxValue %s", show(), fmtNum(*p.MaxValue)))
			}
		case awsIDPrefixes[elemType] != "":
			if !strings.HasPrefix(v, awsIDPrefixes[elemType]) {
				probs = append(probs, fmt.Sprintf("%s is not of type %s (%s…)", safeQuoteOr(v, hide), elemType, awsIDPrefixes[elemType]))
			}
		}
	}
	if value == "" && p.Type == "Number" && len(probs) == 0 {
		probs = append(probs, "empty, but the parameter is a Number")
	}
	if len(p.AllowedValues) > 0 && !contains(p.AllowedValues, value) {
		probs = append(probs, fmt.Sprintf("%s is not one of the AllowedValues [%s]", show(), strings.Join(p.AllowedValues, ", ")))
	}
	if p.pattern != nil && !p.pattern.MatchString(value) {
		probs = append(probs, fmt.Sprintf("%s does not match the AllowedPattern %s", show(), p.AllowedPattern))
	}
	n := utf8.RuneCountInString(value)
	if p.MinLength != nil && n < *p.MinLength {
		probs = append(probs, fmt.Sprintf("%s is shorter than MinLength %d", show(), *p.MinLength))
	}
	if p.MaxLength != nil && n > *p.MaxLength {
		probs = append(probs, fmt.Sprintf("%s is longer than MaxLength %d", show(), *p.MaxLength))
	}
	return probs
}

func safeQuoteOr(v string, hide bool) string {
	if hide {
		return "a value (not shown)"
	}
	return safeQuote(v)
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
