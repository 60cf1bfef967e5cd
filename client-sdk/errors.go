package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/internal/layout"
)

// Errors callers branch on with errors.Is. Errors returned by this package
// wrap one of them where one applies.
var (
	// ErrInvalid: a write failed validation (schema, op shape, a field
	// required on create is missing). Nothing was stored. The error is a
	// *ValidationError.
	ErrInvalid = errors.New("client: invalid write")
	// ErrNotFound: no record with that reference in the local replica.
	ErrNotFound = errors.New("client: record not found")
	// ErrDeleted: a field write to a deleted record. Restore it first.
	ErrDeleted = errors.New("client: record is deleted")
	// ErrSignedOut: the replica holds no usable tokens: never logged in, or
	// the server refused a refresh (device revoked, refresh token reused,
	// credentials invalid). The outbox is kept; Login again to resume.
	// The error wraps the server's *api.Problem when there was one.
	ErrSignedOut = errors.New("client: signed out")
	// ErrNoKey: Open was given no encryption key and not told to run
	// unencrypted.
	ErrNoKey = errors.New("client: no encryption key")
	// ErrClosed: the replica has been closed.
	ErrClosed = errors.New("client: replica closed")
	// ErrNoServer: a sync or login on a replica opened without ServerURL.
	ErrNoServer = errors.New("client: no server URL")
	// ErrRefused: the server refused a pushed change as a whole with a code
	// that may pass (not a sequence gap, which Sync repairs itself, and not
	// one that can never succeed, which sets the change aside in Rejected;
	// see the package doc). The change stays in the outbox. The error wraps
	// an *api.Problem carrying the change's code.
	ErrRefused = errors.New("client: change refused")
	// ErrBusy: Background was called while a background loop is running.
	ErrBusy = errors.New("client: background sync already running")
	// ErrUnavailable: the server could not be reached or did not answer:
	// no network, connection refused, reset or cut, a timeout, or a 502,
	// 503 or 504 reply. Nothing was lost; sync again later. An error the
	// server sent (a refusal) does not match it, so an app can tell "offline"
	// from "refused". The error also wraps the cause (and the *api.Problem
	// of a 503).
	ErrUnavailable = errors.New("client: server unavailable")
	// ErrNewerLayout: Open found a replica written by a newer build of the
	// SDK (a later local layout version); it is left untouched.
	ErrNewerLayout = layout.ErrNewer
	// ErrTooLarge: a write is bigger than the server can ever accept (see
	// Options.MaxValueBytes, MaxWriteOps, MaxWriteBytes). Nothing was
	// stored. The error is a *ValidationError wrapping a *LimitError, so it
	// also matches ErrInvalid.
	ErrTooLarge = errors.New("client: write too large")
)

// LimitError reports the limit a write exceeded. It matches ErrTooLarge
// with errors.Is.
type LimitError struct {
	What  string // "value", "ops in one write" or "bytes in one write"
	Field string // the field, for a value
	Size  int    // the write's size, in the limit's unit
	Limit int
}

// Error names the limit and the sizes.
func (e *LimitError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s of field %q is %d bytes, over the limit of %d", e.What, e.Field, e.Size, e.Limit)
	}
	return fmt.Sprintf("%d %s, over the limit of %d", e.Size, e.What, e.Limit)
}

// Unwrap returns ErrTooLarge.
func (e *LimitError) Unwrap() error { return ErrTooLarge }

// ValidationError reports a write refused before anything was stored. It
// matches ErrInvalid with errors.Is and unwraps to the validator's error.
type ValidationError struct {
	Ref     Ref
	Field   string   // the field at fault, if one
	Missing []string // fields required on create that were not given
	Err     error    // the validator's or op check's error, if any
}

// Error names the record, the field at fault, any missing fields and the
// cause.
func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid write to %s/%s/%s", e.Ref.Team, e.Ref.Collection, e.Ref.ID)
	if e.Field != "" {
		fmt.Fprintf(&b, " field %q", e.Field)
	}
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, ": missing required fields %s", strings.Join(e.Missing, ", "))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns ErrInvalid and the underlying error.
func (e *ValidationError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.Err}
}

// problemCode returns the api code of the first *api.Problem in err's chain,
// or "".
func problemCode(err error) api.Code {
	var p *api.Problem
	if errors.As(err, &p) {
		return p.Code
	}
	return ""
}
