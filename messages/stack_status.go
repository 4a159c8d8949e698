package messages

import "strings"

// DetailTypeStackStatus is the detail-type of a CloudFormation stack status change
// (source aws.cloudformation).
const DetailTypeStackStatus = "CloudFormation Stack Status Change"

// StackStatus is the detail of "CloudFormation Stack Status Change" (KindStackStatus), with
// "status-details" flattened. StackID and Status are required.
//
// AWS's example (AWS CloudFormation User Guide, "Stack Status Change event detail"), also in
// testdata/stack.status.json:
//
//	{
//	  "version": "0",
//	  "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
//	  "detail-type": "CloudFormation Stack Status Change",
//	  "source": "aws.cloudformation",
//	  "account": "111122223333",
//	  "time": "2017-12-22T18:43:48Z",
//	  "region": "us-west-1",
//	  "resources": [
//	    "arn:aws:cloudformation:us-west-1:111122223333:stack/teststack"
//	  ],
//	  "detail": {
//	    "stack-id": "arn:aws:cloudformation:us-west-1:111122223333:stack/teststack",
//	    "status-details": {
//	      "status": "CREATE_COMPLETE",
//	      "status-reason": ""
//	    },
//	    "client-request-token": ""
//	  }
//	}
type StackStatus struct {
	// StackID is the stack's ARN.
	StackID string
	// StackName is taken from StackID (".../stack/NAME" or ".../stack/NAME/UUID"); StackID
	// itself when it is no ARN.
	StackName string
	// Status is the stack status, e.g. UPDATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE.
	Status             string
	StatusReason       string
	ClientRequestToken string
}

func parseStackStatus(env *Envelope) (any, error) {
	var s StackStatus
	err := decodeStrings("detail", env.Detail, []stringField{
		{"stack-id", &s.StackID}, {"client-request-token", &s.ClientRequestToken},
	}, func(key, val []byte) error {
		if !keyIs(key, "status-details") || jsonType(val) == "null" {
			return nil
		}
		return decodeStrings("detail.status-details", val, []stringField{
			{"status", &s.Status}, {"status-reason", &s.StatusReason},
		}, nil)
	})
	if err != nil {
		return nil, err
	}
	var problems problemList
	problems.required("detail.stack-id", s.StackID)
	problems.required("detail.status-details.status", s.Status)
	if err := problems.err(); err != nil {
		return nil, err
	}
	s.StackName = stackName(s.StackID)
	return &s, nil
}

func stackName(id string) string {
	_, rest, ok := strings.Cut(id, ":stack/")
	if !ok {
		return id
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}
