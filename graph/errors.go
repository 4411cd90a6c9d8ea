package graph

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Driver or the Store returns wraps one of
// these (test with errors.Is), together with the operation and the key, so
// plugins can map them to containerd/Docker codes and the CLI to exit codes.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotImplemented     = errors.New("not implemented")
	ErrNotSupported       = errors.New("not supported")
)

// OpError is an error of one operation on one key.
type OpError struct {
	Op  string // the operation, e.g. "prepare"
	Key string // the snapshot key, layer or image the operation was on
	Err error  // wraps a sentinel, possibly with more detail
}

// Error reads "OP KEY: ERR".
func (e *OpError) Error() string {
	if e.Key == "" {
		return e.Op + ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s %q: %v", e.Op, e.Key, e.Err)
}

// Unwrap returns the wrapped error.
func (e *OpError) Unwrap() error { return e.Err }

// Errorf returns an OpError for op on key that wraps sentinel, with a detail
// message formatted from format and args ("" for none).
func Errorf(sentinel error, op, key, format string, args ...any) error {
	err := sentinel
	if format != "" {
		err = fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), sentinel)
	}
	return &OpError{Op: op, Key: key, Err: err}
}

// Wrap wraps err with op and key; it returns nil when err is nil.
func Wrap(err error, op, key string) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, Key: key, Err: err}
}
