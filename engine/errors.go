package engine

import (
	"errors"
	"fmt"
)

// Categories of failure. Each error the engine returns wraps at most one of them;
// the API maps them to HTTP statuses in one place.
var (
	// ErrInvalid: the request is wrong; its message says how.
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable: the request is fine but this server cannot serve that kind of
	// request (a mode or language it does not offer).
	ErrUnavailable = errors.New("not available")
	// ErrBusy: capacity is exhausted for now; retry later.
	ErrBusy = errors.New("busy")
	// ErrQuota: the account is at one of its quotas (the message says which).
	ErrQuota = errors.New("quota exceeded")
	// ErrNotFound: the named object does not exist for this account.
	ErrNotFound = errors.New("not found")
)

// invalid returns an ErrInvalid error with a message for the client.
func invalid(msg string) error { return &clientError{kind: ErrInvalid, msg: msg} }

// unavailable returns an ErrUnavailable error with a message for the client.
func unavailable(msg string) error { return &clientError{kind: ErrUnavailable, msg: msg} }

// errorf returns an error of the given kind (one of the Err* categories) with a
// message for the client, without the category's name in front.
func errorf(kind error, format string, args ...any) error {
	return &clientError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

type clientError struct {
	kind error
	msg  string
}

func (e *clientError) Error() string { return e.msg }
func (e *clientError) Unwrap() error { return e.kind }
