package messages

import "strings"

// DetailTypeScheduled is the detail-type of an EventBridge schedule rule's event
// (source aws.events).
const DetailTypeScheduled = "Scheduled Event"

// Scheduled is a "Scheduled Event" (KindScheduled): the tick of the fleet whose rule fired. Its
// detail is empty; the rule is resources[0], which is required. The worker maps RuleARN (or
// RuleName) to a fleet through its config.
//
// AWS's example (AWS Lambda Developer Guide, "Invoke a Lambda function on a schedule"), also in
// testdata/scheduled.json:
//
//	{
//	  "version": "0",
//	  "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
//	  "detail-type": "Scheduled Event",
//	  "source": "aws.events",
//	  "account": "123456789012",
//	  "time": "2015-10-08T16:53:06Z",
//	  "region": "us-east-1",
//	  "resources": [
//	    "arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"
//	  ],
//	  "detail": {}
//	}
type Scheduled struct {
	// RuleARN is resources[0], the ARN of the rule that fired.
	RuleARN string
	// RuleName is the rule's name: the last path element of RuleARN after "rule/" (rules on
	// custom buses have ARNs ".../rule/BUS/NAME").
	RuleName string
}

func parseScheduled(env *Envelope) (any, error) {
	if len(env.Resources) == 0 || env.Resources[0] == "" {
		return nil, invalidf("field \"resources\": a Scheduled Event needs its rule ARN as resources[0]")
	}
	arn := env.Resources[0]
	name := arn
	if i := strings.Index(arn, ":rule/"); i >= 0 {
		name = arn[i+len(":rule/"):]
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if name == "" {
		return nil, invalidf("field \"resources\": %s names no rule", quote(arn))
	}
	return &Scheduled{RuleARN: arn, RuleName: name}, nil
}
