package messages

// DetailTypeParameterChange is the detail-type of an SSM Parameter Store change (source aws.ssm).
const DetailTypeParameterChange = "Parameter Store Change"

// Operations a ParameterChange may carry.
const (
	ParameterCreate       = "Create"
	ParameterUpdate       = "Update"
	ParameterDelete       = "Delete"
	ParameterLabelVersion = "LabelParameterVersion"
)

// ParameterChange is the detail of "Parameter Store Change" (KindParameterChange). It names the
// parameter, never its value. Name and Operation are required.
//
// AWS's example (AWS Systems Manager User Guide, "Amazon EventBridge event examples for Systems
// Manager", Parameter Store Change, Create), also in testdata/parameter.change.json:
//
//	{
//	  "version": "0",
//	  "id": "6a7e4feb-b491-4cf7-a9f1-bf3703497718",
//	  "detail-type": "Parameter Store Change",
//	  "source": "aws.ssm",
//	  "account": "123456789012",
//	  "time": "2017-05-22T16:43:48Z",
//	  "region": "us-east-1",
//	  "resources": [
//	    "arn:aws:ssm:us-east-1:123456789012:parameter/foo"
//	  ],
//	  "detail": {
//	    "operation": "Create",
//	    "name": "foo",
//	    "type": "String",
//	    "description": "Sample Parameter"
//	  }
//	}
type ParameterChange struct {
	Name        string `json:"name"`
	Operation   string `json:"operation"`
	Type        string `json:"type"`
	Description string `json:"description"`
}

func parseParameterChange(env *Envelope) (any, error) {
	var c ParameterChange
	if err := decodeStrings("detail", env.Detail, []stringField{
		{"name", &c.Name}, {"operation", &c.Operation}, {"type", &c.Type}, {"description", &c.Description},
	}, nil); err != nil {
		return nil, err
	}
	var problems problemList
	problems.required("detail.name", c.Name)
	problems.required("detail.operation", c.Operation)
	if err := problems.err(); err != nil {
		return nil, err
	}
	return &c, nil
}
