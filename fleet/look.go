package fleet

import "fmt"

// WorkerError is a look at a group or a runner that the worker could not make: an AWS call the
// look needs throttled or refused, the worker's own deadline, its metrics URL template, its own
// network. It says nothing about the group or the runner. Adapters return it for what they know
// to be theirs; the launch gate and the cycle (handlers/launch, handlers/cycle) count it apart
// from a runner that does not answer.
type WorkerError struct {
	// Reason is one of the Worker* reasons (the reason label of the look_failures_total counters).
	Reason string
	// Err is what failed.
	Err error
}

func (e *WorkerError) Error() string {
	return fmt.Sprintf("the worker could not look (%s): %v", e.Reason, e.Err)
}

func (e *WorkerError) Unwrap() error { return e.Err }

// Reasons of a WorkerError.
const (
	// WorkerThrottled: an AWS call the look needs (DescribeAutoScalingGroups, DescribeInstances
	// for the runners' addresses) was throttled.
	WorkerThrottled = "throttled"
	// WorkerAccessDenied: such a call was refused for the worker's role or credentials.
	WorkerAccessDenied = "access-denied"
	// WorkerAWSError: such a call failed otherwise (5xx, AWS unreachable).
	WorkerAWSError = "aws-error"
	// WorkerDeadline: the worker's step ran out of time, or was cancelled (a shutdown).
	WorkerDeadline = "deadline"
	// WorkerURLTemplate: the fleet's metrics URL could not be made from its template.
	WorkerURLTemplate = "url-template"
	// WorkerNetwork: the worker's own network: its DNS resolver failed, its egress guard
	// (loopback only) refused the address, or its own sockets failed (out of file descriptors or
	// local ports, no route from its subnet).
	WorkerNetwork = "network"
	// WorkerOther: any other failure of the worker's (reading its own state table, say).
	WorkerOther = "other"
)
