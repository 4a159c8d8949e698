package messages

import (
	"encoding/json"
	"time"
)

// Size limits of bodies Parse accepts.
const (
	// MaxEventSize is EventBridge's limit on an event (PutEvents entry): 256 KiB. Larger bodies
	// are refused before any decoding.
	MaxEventSize = 256 * 1024
	// MaxCommandSize bounds a command or a drain follow-up: 64 KiB, a quarter of what SQS takes,
	// ample for an inline template up to CloudFormation's 51,200-byte TemplateBody limit.
	MaxCommandSize = 64 * 1024
)

// Envelope is the EventBridge event envelope, as delivered to an SQS target. Parse fills it
// for every event, handled or not; Detail keeps the raw detail object.
type Envelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       time.Time       `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// Message is one parsed body. Kind says what Payload holds:
//
//	KindTerminateAction, KindLaunchAction  *LifecycleAction
//	KindSpotInterruption                   *SpotInterruption
//	KindRebalance                          *Rebalance
//	KindStateChange                        *StateChange
//	KindScheduled                          *Scheduled
//	KindParameterChange                    *ParameterChange
//	KindStackStatus                        *StackStatus
//	KindCommand                            *Command
//	KindDrainStep                          *DrainStep
//	KindFleetStep                          *FleetStep
//	KindUnknown                            nil (returned with ErrUnknownKind)
type Message struct {
	Kind Kind
	// ID is the event's id, the command's id, or the follow-up's id.
	ID string
	// Time is when the message was made: the event's time, the command's issue time, the
	// follow-up's issue time (zero when it carries none). Event lag is measured from it.
	Time time.Time
	// Event is the envelope of an EventBridge event; nil for commands and follow-ups.
	Event *Envelope
	// Payload is the typed body (see the table above).
	Payload any
}
