package launch

import "github.com/runnerfleet/runnerfleet/messages"

// tokenHash is what logs carry instead of the lifecycle action token.
func tokenHash(token string) string { return messages.TokenHash(token) }
