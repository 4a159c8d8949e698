// Package properties reads a fleet's properties file (Key=Value lines, # comments, blank lines)
// as data — it is never executed — and checks it against a CloudFormation template's
// Parameters: unknown keys, missing required ones, values of the wrong type or outside
// AllowedValues, AllowedPattern, MinValue, MaxValue, MinLength or MaxLength, lines that are not
// Key=Value, CR-only line endings and unclosed quotes. Every problem is reported at once, each
// with its line number.
//
// Values are quoted in problems only when they cannot be a secret: never for a NoEcho parameter,
// a key that names a token, or a value that looks like a GitLab token.
package properties

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxLine bounds one line of a properties file; CloudFormation's own parameter values are far
// shorter (4 KiB), so a longer line is a mistake, not data.
const maxLine = 64 * 1024

// Entry is one Key=Value line.
type Entry struct {
	Key, Value string
	// Line is the 1-based line number.
	Line int
}

// Problem is one thing wrong with a properties file. Line is 0 for a problem of the whole file
// (a required parameter missing).
type Problem struct {
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return p.Msg
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
}

// Problems is every problem of a file, in line order (file-level ones last). It is an error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d problem(s) in the properties file:\n  %s", len(ps), strings.Join(lines, "\n  "))
}

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,255}$`)

// Parse reads Key=Value lines. Blank lines and lines starting with # (after spaces) are skipped;
// spaces around the key and the value are trimmed, and one pair of matching quotes around the
// value is removed (files written for the AWS sample's shell). A line that is not Key=Value, a
// key that is not a CloudFormation parameter name, a key given twice, a carriage return inside a
// line (a file with CR-only line endings reads as one line) and a value opening a quote it does
// not close are problems. Nothing is expanded or executed: "$(...)" and "${X}" are plain text.
func Parse(r io.Reader) ([]Entry, Problems) {
	var entries []Entry
	var ps Problems
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if strings.ContainsRune(line, '\r') {
			// Checked before comments: "# c\rA=1" would otherwise hide A=1.
			ps = append(ps, Problem{n, fmt.Sprintf("a carriage return inside the line (%d lines joined): the file has CR-only line endings; save it with LF or CRLF line endings",
				strings.Count(line, "\r")+1)})
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
			ps = append(ps, Problem{n, "not a Key=Value line"})
			continue
		case key == "":
			ps = append(ps, Problem{n, "not a Key=Value line: the key is empty"})
			continue
		case !keyPattern.MatchString(key):
			ps = append(ps, Problem{n, fmt.Sprintf("not a Key=Value line: key %s is not a parameter name (letters and digits only)", safeQuote(key))})
			continue
		}
		if first, dup := seen[key]; dup {
			ps = append(ps, Problem{n, fmt.Sprintf("%s is set again (first on line %d)", key, first)})
			continue
		}
		seen[key] = n
		if q, unclosed := unclosedQuote(value); unclosed {
			ps = append(ps, Problem{n, fmt.Sprintf("%s: the value opens a %s quote it does not close", key, q)})
			continue
		}
		entries = append(entries, Entry{Key: key, Value: unquote(value), Line: n})
	}
	if err := sc.Err(); err != nil {
		ps = append(ps, Problem{n + 1, fmt.Sprintf("reading the file: %v", err)})
	}
	return entries, ps
}

// unclosedQuote reports whether v starts with a quote that does not also end it, and which.
func unclosedQuote(v string) (string, bool) {
	if v == "" || (v[0] != '"' && v[0] != '\'') {
		return "", false
	}
	if len(v) >= 2 && v[len(v)-1] == v[0] {
		return "", false
	}
	if v[0] == '"' {
		return "double", true
	}
	return "single", true
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// Legacy says what became of a key of an older properties format (the AWS sample's): Parameter
// is the parameter it now sets ("" when the key is gone), Note what changed or what replaced it.
type Legacy struct {
	Parameter string
	Note      string
}

// Options tune Check.
type Options struct {
	// RequireAll reports parameters without a Default that the file does not set (a stack being
	// created). On an update, absent parameters keep their previous values, so leave it false.
	RequireAll bool
	// Legacy maps keys of older formats to what replaced them.
	Legacy map[string]Legacy
}

// Result is a checked file: the parameter values to send and notes about renamed keys.
type Result struct {
	// Values are parameter values by parameter name.
	Values map[string]string
	// Notes are informational (a legacy key mapped onto its parameter, with what changed).
	Notes []Problem
}

// Check checks entries against the template's parameters and returns the values to send, or
// every problem found.
func Check(entries []Entry, params map[string]*Parameter, o Options) (Result, Problems) {
	res := Result{Values: map[string]string{}}
	var ps Problems
	setBy := map[string]int{}
	for _, e := range entries {
		name := e.Key
		if _, ok := params[name]; !ok {
			l, legacy := o.Legacy[e.Key]
			switch {
			case legacy && l.Parameter == "":
				ps = append(ps, Problem{e.Line, fmt.Sprintf("%s is no longer used: %s", e.Key, l.Note)})
				continue
			case legacy && params[l.Parameter] != nil && l.Parameter != e.Key:
				name = l.Parameter
				res.Notes = append(res.Notes, Problem{e.Line, fmt.Sprintf("%s now sets %s%s", e.Key, name, noteSuffix(l.Note))})
			default:
				ps = append(ps, Problem{e.Line, fmt.Sprintf("unknown key %s: the template has no such parameter%s", e.Key, suggest(e.Key, params))})
				continue
			}
		} else if l, legacy := o.Legacy[e.Key]; legacy && l.Parameter == e.Key && l.Note != "" {
			res.Notes = append(res.Notes, Problem{e.Line, fmt.Sprintf("%s: %s", e.Key, l.Note)})
		}
		if first, dup := setBy[name]; dup {
			ps = append(ps, Problem{e.Line, fmt.Sprintf("%s is set again through %s (first on line %d)", name, e.Key, first)})
			continue
		}
		setBy[name] = e.Line
		if LooksLikeToken(e.Value) {
			ps = append(ps, Problem{e.Line, name + ": the value looks like a GitLab token (not shown); tokens never go in a properties file: " +
				"put it in the SSM SecureString parameter that the fleet stack names (TokenParameterName)"})
			continue
		}
		p := params[name]
		for _, msg := range p.check(e.Value, secretish(e.Key, e.Value, p)) {
			ps = append(ps, Problem{e.Line, name + ": " + msg})
		}
		res.Values[name] = e.Value
	}
	if o.RequireAll {
		var missing []string
		for name, p := range params {
			if _, ok := setBy[name]; !ok && p.Default == nil {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		for _, name := range missing {
			ps = append(ps, Problem{0, fmt.Sprintf("missing required parameter %s (it has no default and the stack does not exist yet)", name)})
		}
	}
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Line, ps[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
	if len(ps) > 0 {
		return Result{}, ps
	}
	return res, nil
}

// Load parses r and checks it against the template's parameters: Parse, ParseTemplate and Check
// in one call. The error is Problems when the file is wrong, another error when the template is.
func Load(r io.Reader, template []byte, o Options) (Result, error) {
	params, err := ParseTemplate(template)
	if err != nil {
		return Result{}, err
	}
	entries, ps := Parse(r)
	res, cps := Check(entries, params, o)
	ps = append(ps, cps...)
	if len(ps) > 0 {
		sort.SliceStable(ps, func(i, j int) bool {
			a, b := ps[i].Line, ps[j].Line
			if a == 0 || b == 0 {
				return a != 0 && b == 0
			}
			return a < b
		})
		return Result{}, ps
	}
	return res, nil
}

func noteSuffix(note string) string {
	if note == "" {
		return ""
	}
	return " (" + note + ")"
}

// suggest names a parameter that differs from key only in case, if any.
func suggest(key string, params map[string]*Parameter) string {
	for name := range params {
		if strings.EqualFold(name, key) {
			return fmt.Sprintf(" (did you mean %s?)", name)
		}
	}
	return ""
}

// tokenPrefixes are GitLab token prefixes (authentication, registration, personal access, …).
var tokenPrefixes = []string{"glrt-", "glpat-", "gldt-", "glptt-", "glcbt-", "GR1348941", "glsoat-", "gloas-"}

// LooksLikeToken reports whether s contains a GitLab token prefix.
func LooksLikeToken(s string) bool {
	for _, p := range tokenPrefixes {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// secretish says whether a value must not be quoted back.
func secretish(key, value string, p *Parameter) bool {
	k := strings.ToLower(key)
	return (p != nil && p.NoEcho) || strings.Contains(k, "token") || strings.Contains(k, "secret") ||
		strings.Contains(k, "password") || LooksLikeToken(value)
}

// safeQuote quotes s unless it may be a secret.
func safeQuote(s string) string {
	if LooksLikeToken(s) {
		return "(a value that looks like a token, not shown)"
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}
