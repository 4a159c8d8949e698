package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// A small reader for the flat JSON objects of EventBridge events. Parse checks a body with
// json.Valid first, so these functions only ever see well-formed JSON; they find values without
// reflection or maps, which is what makes a typed Parse faster than json.Unmarshal into
// map[string]any. Commands, which must be strict, use encoding/json instead.

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at d[i] == '"'.
func skipString(d []byte, i int) int {
	for i++; i < len(d); i++ {
		switch d[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(d)
}

// skipValue returns the index just past the value starting at d[i] (not a space).
func skipValue(d []byte, i int) int {
	if i >= len(d) {
		return len(d)
	}
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		depth := 0
		for i < len(d) {
			switch d[i] {
			case '"':
				i = skipString(d, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(d)
	}
	for i < len(d) {
		switch d[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// eachField calls fn with the raw key (without quotes, escapes undecoded) and raw value of every
// member of the valid JSON object obj. It stops at fn's first error.
func eachField(obj []byte, fn func(key, val []byte) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil
	}
	i = skipSpace(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		end := skipString(obj, i)
		key := obj[i+1 : max(i+1, end-1)]
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil
		}
		i = skipSpace(obj, i+1)
		vend := skipValue(obj, i)
		if err := fn(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipSpace(obj, vend)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return nil
}

// keyIs reports whether a raw key equals name (decoding escapes in the rare key that has them).
func keyIs(key []byte, name string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key) == name
	}
	var s string
	q := make([]byte, 0, len(key)+2)
	q = append(append(append(q, '"'), key...), '"')
	return json.Unmarshal(q, &s) == nil && s == name
}

// jsonType names the JSON type of a raw value, for reasons.
func jsonType(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// stringValue decodes a raw JSON string value. null gives "" (absent), like encoding/json; any other
// type is an *InvalidError naming field.
func stringValue(field string, raw []byte) (string, error) {
	if len(raw) >= 2 && raw[0] == '"' {
		inner := raw[1 : len(raw)-1]
		if bytes.IndexByte(inner, '\\') < 0 {
			return string(inner), nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", invalidf("field %q: %v", field, err)
		}
		return s, nil
	}
	if jsonType(raw) == "null" {
		return "", nil
	}
	return "", invalidf("field %q: want a string, got JSON %s", field, jsonType(raw))
}

// stringsValue decodes a raw JSON array of strings (null gives nil).
func stringsValue(field string, raw []byte) ([]string, error) {
	switch jsonType(raw) {
	case "null":
		return nil, nil
	case "array":
	default:
		return nil, invalidf("field %q: want an array, got JSON %s", field, jsonType(raw))
	}
	out := []string{}
	i := skipSpace(raw, 1)
	for i < len(raw) && raw[i] != ']' {
		end := skipValue(raw, i)
		s, err := stringValue(fmt.Sprintf("%s[%d]", field, len(out)), raw[i:end])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return out, nil
}

// stringField binds a JSON member name to the string it fills.
type stringField struct {
	name string
	dst  *string
}

// decodeStrings fills the string fields named in fields from the members of the valid JSON object
// obj, leniently: unknown members are ignored, a modelled member of another type is an
// *InvalidError naming prefix.name. With nested, a member holding an object is handed to nested.
func decodeStrings(prefix string, obj []byte, fields []stringField, nested func(key, val []byte) error) error {
	if t := jsonType(obj); t != "object" {
		return invalidf("field %q: want an object, got JSON %s", prefix, t)
	}
	return eachField(obj, func(key, val []byte) error {
		for _, f := range fields {
			if keyIs(key, f.name) {
				s, err := stringValue(prefix+"."+f.name, val)
				if err != nil {
					return err
				}
				*f.dst = s
				return nil
			}
		}
		if nested != nil {
			return nested(key, val)
		}
		return nil
	})
}
