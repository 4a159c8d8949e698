package messages

import (
	"reflect"
	"strings"
)

// exactKeys refuses members whose names match a field of t only case-insensitively: encoding/json
// accepts "FLEET" for "fleet", which a strict wire format must not. obj is valid JSON; t is the
// wire struct it was decoded into; nested structs are checked too.
func exactKeys(prefix string, obj []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || jsonType(obj) != "object" {
		return nil
	}
	return eachField(obj, func(key, val []byte) error {
		k := string(key)
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			switch {
			case name == k:
				return exactKeys(prefix+name+".", val, f.Type)
			case strings.EqualFold(name, k):
				return invalidf("field %q: member names are case-sensitive (want %q)", prefix+k, prefix+name)
			}
		}
		return nil
	})
}
