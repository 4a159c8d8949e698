package messages

// Kind names what a message is, independent of its wire shape. Kinds are low-cardinality and
// safe as metric labels.
type Kind string

// The kinds Parse produces.
const (
	// KindTerminateAction is an "EC2 Instance-terminate Lifecycle Action" (aws.autoscaling).
	KindTerminateAction Kind = "lifecycle.terminate"
	// KindLaunchAction is an "EC2 Instance-launch Lifecycle Action" (aws.autoscaling).
	KindLaunchAction Kind = "lifecycle.launch"
	// KindSpotInterruption is an "EC2 Spot Instance Interruption Warning" (aws.ec2).
	KindSpotInterruption Kind = "spot.interruption"
	// KindRebalance is an "EC2 Instance Rebalance Recommendation" (aws.ec2).
	KindRebalance Kind = "spot.rebalance"
	// KindStateChange is an "EC2 Instance State-change Notification" (aws.ec2).
	KindStateChange Kind = "instance.state"
	// KindScheduled is a "Scheduled Event" (aws.events): the tick of the fleet whose rule fired.
	KindScheduled Kind = "scheduled"
	// KindParameterChange is a "Parameter Store Change" (aws.ssm).
	KindParameterChange Kind = "parameter.change"
	// KindStackStatus is a "CloudFormation Stack Status Change" (aws.cloudformation).
	KindStackStatus Kind = "stack.status"
	// KindCommand is a publisher command (body "kind":"command").
	KindCommand Kind = "command"
	// KindDrainStep is a drain follow-up (body "kind":"drain.step").
	KindDrainStep Kind = "drain.step"
	// KindFleetStep is a fleet follow-up (body "kind":"fleet.step").
	KindFleetStep Kind = "fleet.step"
	// KindUnknown is set on the Message returned with ErrUnknownKind: a well-formed EventBridge
	// event whose (source, detail-type) has no parser. Its Envelope is set so the router can count
	// the source and detail-type.
	KindUnknown Kind = "unknown"
)

// EventKind ties an EventBridge (source, detail-type) pair to the Kind it parses into.
type EventKind struct {
	Source     string
	DetailType string
	Kind       Kind
}

// EventKinds lists the EventBridge events Parse understands, in a stable order. Rules and the
// demo can build their event patterns from it.
func EventKinds() []EventKind {
	out := make([]EventKind, 0, len(eventParsers))
	for _, p := range eventParsers {
		out = append(out, EventKind{Source: p.source, DetailType: p.detailType, Kind: p.kind})
	}
	return out
}

// String returns the kind's name.
func (k Kind) String() string { return string(k) }
