package messages

// DetailTypeSpotInterruption is the detail-type of a Spot interruption notice (source aws.ec2).
const DetailTypeSpotInterruption = "EC2 Spot Instance Interruption Warning"

// SpotInterruption is the detail of "EC2 Spot Instance Interruption Warning"
// (KindSpotInterruption): EC2 will reclaim the instance about two minutes after the event's
// time (at once for hibernation). It names the instance, not its group. Both fields are
// required; InstanceAction is "terminate", "stop" or "hibernate".
//
// AWS's example (Amazon EC2 User Guide, "Spot Instance interruption notices"; the "time" and
// "instance-action" placeholders replaced by concrete values), also in
// testdata/spot.interruption.json:
//
//	{
//	  "version": "0",
//	  "id": "12345678-1234-1234-1234-123456789012",
//	  "detail-type": "EC2 Spot Instance Interruption Warning",
//	  "source": "aws.ec2",
//	  "account": "123456789012",
//	  "time": "2026-11-27T17:00:00Z",
//	  "region": "us-east-2",
//	  "resources": ["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],
//	  "detail": {
//	    "instance-id": "i-1234567890abcdef0",
//	    "instance-action": "terminate"
//	  }
//	}
type SpotInterruption struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"`
}

func parseSpotInterruption(env *Envelope) (any, error) {
	var s SpotInterruption
	if err := decodeStrings("detail", env.Detail, []stringField{
		{"instance-id", &s.InstanceID}, {"instance-action", &s.InstanceAction},
	}, nil); err != nil {
		return nil, err
	}
	var problems problemList
	problems.required("detail.instance-id", s.InstanceID)
	problems.required("detail.instance-action", s.InstanceAction)
	if err := problems.err(); err != nil {
		return nil, err
	}
	return &s, nil
}
