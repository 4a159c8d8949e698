package properties

import (
	"strings"
	"testing"
)

// FuzzParse: any input parses without panicking; every entry has a valid key and a line within
// the input, in increasing order; a problem never quotes a token.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"A=1\n# c\n\nB = \"x\"\n", "=\n==\nA\n", "\ufeffK=v\r\nK=w", "T=glrt-abc\nglrt-x", "A='$(id)'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		entries, ps := Parse(strings.NewReader(in))
		lines := strings.Count(in, "\n") + 1
		last := 0
		for _, e := range entries {
			if !keyPattern.MatchString(e.Key) || e.Line <= last || e.Line > lines {
				t.Fatalf("entry %+v after line %d of %d", e, last, lines)
			}
			last = e.Line
		}
		for _, p := range ps {
			if strings.Contains(p.Msg, "glrt-") {
				t.Fatalf("problem quotes a token: %s", p)
			}
		}
	})
}
