package marks

import "github.com/aws/aws-sdk-go-v2/service/autoscaling"

// The SDK's client satisfies everything Wire asks of Auto Scaling.
var _ WireAutoScalingAPI = (*autoscaling.Client)(nil)
