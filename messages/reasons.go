package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// problemList gathers every problem of one message, so a reason lists them all at once.
type problemList []string

func (p *problemList) add(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// required notes a missing (empty) string field.
func (p *problemList) required(field, value string) {
	if value == "" {
		p.add("field %q is missing", field)
	}
}

func (p problemList) err() error {
	if len(p) == 0 {
		return nil
	}
	return &InvalidError{Reason: strings.Join(p, "; ")}
}

// jsonReason turns an encoding/json error into words naming the field (prefixed by where the
// object sits, e.g. "detail").
func jsonReason(prefix string, err error) string {
	join := func(field string) string {
		switch {
		case prefix == "":
			return field
		case field == "":
			return prefix
		}
		return prefix + "." + field
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not valid JSON (byte %d): %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		field := join(typ.Field)
		if field == "" {
			return fmt.Sprintf("want a JSON object, got %s", typ.Value)
		}
		return fmt.Sprintf("field %q: want %s, got JSON %s", field, goTypeWords(typ.Type.String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "not valid JSON: unexpected end of input"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
		name = strings.Trim(name, `"`)
		return fmt.Sprintf("unknown field %q", join(name))
	}
	if prefix != "" {
		return prefix + ": " + msg
	}
	return msg
}

func goTypeWords(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "messages."), strings.HasPrefix(t, "struct"):
		return "an object"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return t
}

// quote quotes a value for a reason, cut to a readable length. A value that looks like a GitLab
// token is not quoted at all: a reason goes to the DLQ's attributes and the worker's log.
func quote(s string) string {
	if tokenPrefixIn(s) != "" {
		// A value a reason quotes goes to the DLQ's attributes and the worker's log.
		return "<redacted: looks like a GitLab token>"
	}
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
