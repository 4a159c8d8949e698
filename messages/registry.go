package messages

// eventKey is what EventBridge rules match on: the event's source and detail-type.
type eventKey struct {
	source, detailType string
}

// eventParser turns one kind of event into its typed detail.
type eventParser struct {
	source, detailType string
	kind               Kind
	parse              func(env *Envelope) (any, error)
}

// eventParsers is the registry: one entry per (source, detail-type) RunnerFleet handles. To add
// a kind, add its file (model, example JSON, parse function) and one line here.
var eventParsers = []eventParser{
	{"aws.autoscaling", DetailTypeTerminateAction, KindTerminateAction, parseTerminateAction},
	{"aws.autoscaling", DetailTypeLaunchAction, KindLaunchAction, parseLaunchAction},
	{"aws.ec2", DetailTypeSpotInterruption, KindSpotInterruption, parseSpotInterruption},
	{"aws.ec2", DetailTypeRebalance, KindRebalance, parseRebalance},
	{"aws.ec2", DetailTypeStateChange, KindStateChange, parseStateChange},
	{"aws.events", DetailTypeScheduled, KindScheduled, parseScheduled},
	{"aws.ssm", DetailTypeParameterChange, KindParameterChange, parseParameterChange},
	{"aws.cloudformation", DetailTypeStackStatus, KindStackStatus, parseStackStatus},
}

var eventIndex = func() map[eventKey]*eventParser {
	m := make(map[eventKey]*eventParser, len(eventParsers))
	for i := range eventParsers {
		p := &eventParsers[i]
		m[eventKey{p.source, p.detailType}] = p
	}
	return m
}()
