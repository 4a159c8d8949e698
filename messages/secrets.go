package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"sort"
	"strings"
)

// tokenPrefixes start GitLab tokens that must never travel in a message: runner authentication
// tokens (glrt-, and glrtr- for those made with a registration token), legacy runner registration
// tokens (GR1348941) and personal access tokens (glpat-).
var tokenPrefixes = []string{"glrt-", "glrtr-", "GR1348941", "glpat-"}

// tokenPrefixIn returns the token prefix found in s, or "".
func tokenPrefixIn(s string) string {
	for _, p := range tokenPrefixes {
		if strings.Contains(s, p) {
			return p
		}
	}
	return ""
}

// tokenShape matches a GitLab token itself: a prefix, then at least eight of the characters
// tokens are made of. A text that only names the prefix ("the runner token (glrt-...)", as the
// runner template's descriptions do) does not match.
var tokenShape = regexp.MustCompile(`(glrtr?-|glpat-|GR1348941)[0-9A-Za-z_-]{8,}`)

// tokenIn returns the prefix of the first GitLab token in s, or "". It is for free text (a
// template body) where the prefixes may be named; a single value is held to tokenPrefixIn.
func tokenIn(s string) string {
	if m := tokenShape.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

// keyNamesToken reports whether a parameter key names a token itself rather than the parameter
// that holds it or the key that encrypts it: it contains "token" (any case) and does not end in
// "Parameter", "ParameterName", "ParameterArn", "KmsKeyArn" or "KmsKeyId" (the runner template's
// TokenKmsKeyArn names the KMS key of the SecureString, never the token).
func keyNamesToken(key string) bool {
	k := strings.ToLower(key)
	if !strings.Contains(k, "token") {
		return false
	}
	for _, ref := range []string{"parameter", "parametername", "parameterarn", "kmskeyarn", "kmskeyid"} {
		if strings.HasSuffix(k, ref) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TokenHash is what logs, errors and metrics carry instead of a lifecycle action token: the first
// 6 bytes of its SHA-256, in hex. Every package that names a drain or a launch gate uses it, so one
// drain reads as one hash everywhere.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
