package messages

import (
	"errors"
	"fmt"
)

// ErrUnknownKind is returned by Parse for a well-formed EventBridge event whose
// (source, detail-type) RunnerFleet does not handle. It is neither transient nor permanent:
// the router acks the message and counts it (the returned Message carries the Envelope).
var ErrUnknownKind = errors.New("messages: unknown event kind")

// InvalidError reports a malformed body: not JSON, a missing or mistyped field, an unknown
// command field or type, an oversize body, a token where none may be. Such a message can
// never succeed, so the router dead-letters it with Reason and acks it. InvalidError is
// permanent (IsPermanent reports true).
type InvalidError struct {
	// Reason says in words what is wrong and names the field. It never quotes a secret.
	Reason string
}

// Error implements error.
func (e *InvalidError) Error() string { return "invalid message: " + e.Reason }

func invalidf(format string, args ...any) *InvalidError {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// permanentError is what Reject returns.
type permanentError struct {
	reason string
	err    error
}

func (e *permanentError) Error() string { return "rejected: " + e.reason }
func (e *permanentError) Unwrap() error { return e.err }

// Reject returns an error for a message that can never succeed however often it is retried
// (a command for an unknown fleet, a stale command, a drain for an instance of another group).
// Handlers return it; the router dead-letters the message with the reason and acks it.
// format and args are as in fmt.Errorf, so %w wraps a cause that errors.Is/As still find.
// Any error that is not permanent is transient: the router nacks and the message is retried.
func Reject(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &permanentError{reason: err.Error(), err: err}
}

// IsPermanent reports whether err (or an error it wraps) came from Reject or is an
// *InvalidError: the message must be dead-lettered, not retried. ErrUnknownKind is not
// permanent; nil is not permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	var inv *InvalidError
	return errors.As(err, &inv)
}

// Reason returns the words to put in the DLQ reason attribute: the reason of a Reject or
// InvalidError found in err's chain, else err's message; "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var p *permanentError
	if errors.As(err, &p) {
		return p.reason
	}
	var inv *InvalidError
	if errors.As(err, &inv) {
		return inv.Reason
	}
	return err.Error()
}
