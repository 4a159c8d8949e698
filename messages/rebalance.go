package messages

// DetailTypeRebalance is the detail-type of a rebalance recommendation (source aws.ec2).
const DetailTypeRebalance = "EC2 Instance Rebalance Recommendation"

// Rebalance is the detail of "EC2 Instance Rebalance Recommendation" (KindRebalance): a Spot
// Instance is at elevated risk of interruption. InstanceID is required.
//
// AWS's example (Amazon EC2 User Guide, "EC2 instance rebalance recommendations"; the "time"
// placeholder replaced by a concrete time), also in testdata/spot.rebalance.json:
//
//	{
//	  "version": "0",
//	  "id": "12345678-1234-1234-1234-123456789012",
//	  "detail-type": "EC2 Instance Rebalance Recommendation",
//	  "source": "aws.ec2",
//	  "account": "123456789012",
//	  "time": "2026-11-27T17:00:00Z",
//	  "region": "us-east-2",
//	  "resources": ["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],
//	  "detail": {
//	    "instance-id": "i-1234567890abcdef0"
//	  }
//	}
type Rebalance struct {
	InstanceID string `json:"instance-id"`
}

func parseRebalance(env *Envelope) (any, error) {
	var r Rebalance
	if err := decodeStrings("detail", env.Detail, []stringField{{"instance-id", &r.InstanceID}}, nil); err != nil {
		return nil, err
	}
	var problems problemList
	problems.required("detail.instance-id", r.InstanceID)
	if err := problems.err(); err != nil {
		return nil, err
	}
	return &r, nil
}
