package messages_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

func ExampleParse() {
	msg, err := messages.Parse(messages.Sample(messages.KindTerminateAction))
	if err != nil {
		fmt.Println(messages.Reason(err))
		return
	}
	action := msg.Payload.(*messages.LifecycleAction)
	fmt.Println(msg.Kind, msg.Event.Source, action.AutoScalingGroupName, action.EC2InstanceId)

	_, err = messages.Parse([]byte(`{"kind":"command","schema":1}`))
	fmt.Println(messages.IsPermanent(err), messages.Reason(err))

	msg, err = messages.Parse([]byte(`{"id":"1","detail-type":"EC2 Instance Launch Successful","source":"aws.autoscaling","time":"2026-11-27T17:00:00Z","detail":{}}`))
	fmt.Println(errors.Is(err, messages.ErrUnknownKind), msg.Event.DetailType)
	// Output:
	// lifecycle.terminate aws.autoscaling my-asg i-1234567890abcdef0
	// true field "id" is missing; field "issued_at" is missing; field "fleet" is missing; field "type" is missing
	// true EC2 Instance Launch Successful
}

func ExampleNewCommand() {
	c := messages.NewCommand("docker", messages.CommandDrain, time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC))
	c.ID = "d6c0e8a4-6a51-4c1e-9d55-0f4b6f0e5a11" // normally random
	c.Drain.InstanceID = "i-0123456789abcdef0"
	c.Drain.Replace = true
	body, err := c.Marshal()
	fmt.Println(string(body), err)
	// Output:
	// {"kind":"command","schema":1,"id":"d6c0e8a4-6a51-4c1e-9d55-0f4b6f0e5a11","issued_at":"2026-11-27T17:00:00Z","fleet":"docker","type":"drain","drain":{"instance_id":"i-0123456789abcdef0","replace":true}} <nil>
}
