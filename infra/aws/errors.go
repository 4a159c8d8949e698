package aws

import (
	"context"
	"errors"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// Class says what a caller should do about an AWS error. AWS error codes are classified here and
// nowhere else.
type Class int

const (
	// ClassNone: no error.
	ClassNone Class = iota
	// ClassTransient: throttling, 5xx, timeouts, connection failures — retry with backoff.
	ClassTransient
	// ClassNotFound: the thing named does not exist (any more) — usually "done".
	ClassNotFound
	// ClassConflict: a conditional write lost its race, or the resource is not in the state the
	// call needs — re-read and decide again.
	ClassConflict
	// ClassPermanent: anything else (validation, access denied) — retrying will not help.
	ClassPermanent
)

var notFoundCodes = map[string]bool{
	"ResourceNotFoundException":               true,
	"ParameterNotFound":                       true,
	"InvalidInstanceID.NotFound":              true,
	"InvalidInstanceId":                       true,
	"InvocationDoesNotExist":                  true,
	"AWS.SimpleQueueService.NonExistentQueue": true,
	"QueueDoesNotExist":                       true,
	"StackNotFoundException":                  true,
	"ChangeSetNotFound":                       true,
	"ChangeSetNotFoundException":              true,
}

var conflictCodes = map[string]bool{
	"ConditionalCheckFailedException": true,
	"TransactionCanceledException":    true,
	"ScalingActivityInProgress":       true,
	"ResourceInUse":                   true,
	"ResourceContention":              true,
	"IncorrectInstanceState":          true,
}

// accessDeniedCodes say the caller's identity or its permissions were refused: the caller's own
// configuration (its role's policy, its credentials), never the resource's.
var accessDeniedCodes = map[string]bool{
	"AccessDenied":                true,
	"AccessDeniedException":       true,
	"UnauthorizedOperation":       true, // EC2
	"AuthFailure":                 true, // EC2: credentials refused
	"InvalidClientTokenId":        true,
	"UnrecognizedClientException": true,
	"ExpiredToken":                true,
	"ExpiredTokenException":       true,
	"SignatureDoesNotMatch":       true,
	"MissingAuthenticationToken":  true,
}

var transientCodes = map[string]bool{
	"RequestLimitExceeded":                   true,
	"ProvisionedThroughputExceededException": true,
	"ServiceUnavailable":                     true,
	"InternalFailure":                        true,
	"InternalError":                          true,
	"InternalServerError":                    true,
}

// Classify says what kind of failure err is.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassTransient
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		switch {
		case notFoundCodes[code]:
			return ClassNotFound
		case conflictCodes[code]:
			return ClassConflict
		case transientCodes[code]:
			return ClassTransient
		}
		if (retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}).IsErrorThrottle(err).Bool() {
			return ClassTransient
		}
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() >= 500 {
		return ClassTransient
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return ClassTransient
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return ClassTransient
	}
	if apiErr != nil {
		return ClassPermanent
	}
	// Unknown failures (no API error code) are treated as transient: the redrive policy's
	// maxReceiveCount bounds how often a message is retried.
	return ClassTransient
}

// IsTransient reports whether err is worth retrying.
func IsTransient(err error) bool { return Classify(err) == ClassTransient }

// IsNotFound reports whether err says the resource does not exist.
func IsNotFound(err error) bool { return Classify(err) == ClassNotFound }

// IsConflict reports whether err is a lost conditional write or a state conflict.
func IsConflict(err error) bool { return Classify(err) == ClassConflict }

// IsThrottle reports whether err is AWS throttling the caller (the SDK's throttle codes, EC2's
// RequestLimitExceeded among them): a failure of the caller's request rate, not of the resource.
func IsThrottle(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && (retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}).IsErrorThrottle(err).Bool()
}

// IsAccessDenied reports whether err says the caller's identity or permissions were refused
// (AccessDenied, EC2's UnauthorizedOperation and AuthFailure, expired or unknown credentials): the
// caller's configuration is wrong, and retrying will not help until it is fixed.
func IsAccessDenied(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && accessDeniedCodes[apiErr.ErrorCode()]
}

// WorkerFailure says why a failed AWS call that a look at a group or a runner needed is the
// worker's own failure (fleet.WorkerError): the caller's context ended (deadline), AWS throttled
// it, refused it for the worker's role, or failed otherwise (aws-error). The launch gate's and
// the cycle's adapters (infra/aws/marks, infra/aws/cyclestate) classify with it.
func WorkerFailure(ctx context.Context, err error) *fleet.WorkerError {
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return &fleet.WorkerError{Reason: fleet.WorkerDeadline, Err: err}
	case IsThrottle(err):
		return &fleet.WorkerError{Reason: fleet.WorkerThrottled, Err: err}
	case IsAccessDenied(err):
		return &fleet.WorkerError{Reason: fleet.WorkerAccessDenied, Err: err}
	}
	return &fleet.WorkerError{Reason: fleet.WorkerAWSError, Err: err}
}
