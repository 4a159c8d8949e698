package launch

import (
	"crypto/sha256"
	"encoding/hex"
)

// tokenHash is what logs carry instead of the lifecycle action token.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
