package messages

import "embed"

// samples are AWS's documented example events, one file per kind (testdata/<kind>.json), and an
// example command and drain follow-up.
//
//go:embed testdata/*.json
var samples embed.FS

// Sample returns a valid body of kind k: for event kinds AWS's documented example (the JSON quoted
// above its model, placeholders replaced by concrete values); for KindCommand a scale command; for
// KindDrainStep a follow-up. It returns nil for KindUnknown. Handler tests and the demo use it as a
// realistic body to start from; it is read from testdata/<kind>.json, embedded in the binary.
func Sample(k Kind) []byte {
	b, err := samples.ReadFile("testdata/" + string(k) + ".json")
	if err != nil {
		return nil
	}
	return b
}
