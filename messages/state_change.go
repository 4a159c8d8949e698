package messages

// DetailTypeStateChange is the detail-type of an instance state change (source aws.ec2).
const DetailTypeStateChange = "EC2 Instance State-change Notification"

// Instance states a StateChange may carry.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateStopping     = "stopping"
	StateStopped      = "stopped"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
)

// StateChange is the detail of "EC2 Instance State-change Notification" (KindStateChange).
// Both fields are required. AWS's documented example has no "version" field, so the envelope's
// version is optional.
//
// AWS's example (Amazon EC2 User Guide, "State change events for Amazon EC2 instances"), also in
// testdata/instance.state.json:
//
//	{
//	  "id": "7bf73129-1428-4cd3-a780-95db273d1602",
//	  "detail-type": "EC2 Instance State-change Notification",
//	  "source": "aws.ec2",
//	  "account": "123456789012",
//	  "time": "2021-11-11T21:29:54Z",
//	  "region": "us-east-1",
//	  "resources": [
//	    "arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0"
//	  ],
//	  "detail": {
//	    "instance-id": "i-1234567890abcdef0",
//	    "state": "pending"
//	  }
//	}
type StateChange struct {
	InstanceID string `json:"instance-id"`
	State      string `json:"state"`
}

// Leaving reports whether the state means the instance stops serving: stopping, stopped,
// shutting-down or terminated.
func (s *StateChange) Leaving() bool {
	switch s.State {
	case StateStopping, StateStopped, StateShuttingDown, StateTerminated:
		return true
	}
	return false
}

func parseStateChange(env *Envelope) (any, error) {
	var s StateChange
	if err := decodeStrings("detail", env.Detail, []stringField{
		{"instance-id", &s.InstanceID}, {"state", &s.State},
	}, nil); err != nil {
		return nil, err
	}
	var problems problemList
	problems.required("detail.instance-id", s.InstanceID)
	problems.required("detail.state", s.State)
	if err := problems.err(); err != nil {
		return nil, err
	}
	return &s, nil
}
