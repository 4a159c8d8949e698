package messages

// Detail types of the Auto Scaling lifecycle action events (source aws.autoscaling).
const (
	DetailTypeTerminateAction = "EC2 Instance-terminate Lifecycle Action"
	DetailTypeLaunchAction    = "EC2 Instance-launch Lifecycle Action"
)

// Lifecycle transitions a LifecycleAction may carry.
const (
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
)

// LifecycleAction is the detail of "EC2 Instance-terminate Lifecycle Action" (KindTerminateAction)
// and "EC2 Instance-launch Lifecycle Action" (KindLaunchAction): an instance waits in
// Terminating:Wait or Pending:Wait until CompleteLifecycleAction or the hook's timeout.
// Field names are AWS's. LifecycleActionToken, AutoScalingGroupName, LifecycleHookName,
// EC2InstanceId and LifecycleTransition are required, and the transition must match the
// detail-type; NotificationMetadata, Origin and Destination are optional (Origin and
// Destination are "EC2", "AutoScalingGroup" or "WarmPool" when AWS knows them).
//
// AWS's example (Amazon EC2 Auto Scaling User Guide, "Amazon EC2 Auto Scaling event reference",
// scale-in lifecycle action; the "time" placeholder replaced by a concrete time), also in
// testdata/lifecycle.terminate.json:
//
//	{
//	  "version": "0",
//	  "id": "12345678-1234-1234-1234-123456789012",
//	  "detail-type": "EC2 Instance-terminate Lifecycle Action",
//	  "source": "aws.autoscaling",
//	  "account": "123456789012",
//	  "time": "2026-11-27T17:00:00Z",
//	  "region": "us-west-2",
//	  "resources": [
//	    "auto-scaling-group-arn"
//	  ],
//	  "detail": {
//	    "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
//	    "AutoScalingGroupName": "my-asg",
//	    "LifecycleHookName": "my-lifecycle-hook",
//	    "EC2InstanceId": "i-1234567890abcdef0",
//	    "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
//	    "NotificationMetadata": "additional-info",
//	    "Origin": "AutoScalingGroup",
//	    "Destination": "EC2"
//	  }
//	}
//
// The launch example (testdata/lifecycle.launch.json) differs in detail-type,
// "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING", "Origin": "EC2" and
// "Destination": "AutoScalingGroup".
type LifecycleAction struct {
	LifecycleActionToken string `json:"LifecycleActionToken"`
	AutoScalingGroupName string `json:"AutoScalingGroupName"`
	LifecycleHookName    string `json:"LifecycleHookName"`
	EC2InstanceId        string `json:"EC2InstanceId"`
	LifecycleTransition  string `json:"LifecycleTransition"`
	NotificationMetadata string `json:"NotificationMetadata"`
	Origin               string `json:"Origin"`
	Destination          string `json:"Destination"`
}

func parseTerminateAction(env *Envelope) (any, error) {
	return parseLifecycleAction(env, TransitionTerminating)
}

func parseLaunchAction(env *Envelope) (any, error) {
	return parseLifecycleAction(env, TransitionLaunching)
}

func parseLifecycleAction(env *Envelope, transition string) (any, error) {
	var a LifecycleAction
	if err := decodeStrings("detail", env.Detail, []stringField{
		{"LifecycleActionToken", &a.LifecycleActionToken}, {"AutoScalingGroupName", &a.AutoScalingGroupName},
		{"LifecycleHookName", &a.LifecycleHookName}, {"EC2InstanceId", &a.EC2InstanceId},
		{"LifecycleTransition", &a.LifecycleTransition}, {"NotificationMetadata", &a.NotificationMetadata},
		{"Origin", &a.Origin}, {"Destination", &a.Destination},
	}, nil); err != nil {
		return nil, err
	}
	var problems problemList
	problems.required("detail.LifecycleActionToken", a.LifecycleActionToken)
	problems.required("detail.AutoScalingGroupName", a.AutoScalingGroupName)
	problems.required("detail.LifecycleHookName", a.LifecycleHookName)
	problems.required("detail.EC2InstanceId", a.EC2InstanceId)
	switch a.LifecycleTransition {
	case "":
		problems.required("detail.LifecycleTransition", "")
	case transition:
	default:
		problems.add("field \"detail.LifecycleTransition\": %s does not match detail-type %q (want %q)",
			quote(a.LifecycleTransition), env.DetailType, transition)
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return &a, nil
}
