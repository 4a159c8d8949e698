package messages

import "embed"

// samples are AWS's documented example events, one file per kind (testdata/<kind>.json).
//
//go:embed testdata/*.json
var samples embed.FS

// Sample returns AWS's documented example event of an EventBridge kind (the JSON quoted above its
// model), or nil for kinds without one (commands, follow-ups). Handler tests and the demo use it
// as a realistic body to start from.
func Sample(k Kind) []byte {
	b, err := samples.ReadFile("testdata/" + string(k) + ".json")
	if err != nil {
		return nil
	}
	return b
}
