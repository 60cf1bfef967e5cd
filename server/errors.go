package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/labstack/echo/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// Error is an error with a stable api code, returned by handlers and turned
// into a problem reply by the error handler.
type Error struct {
	Code   api.Code
	Detail string
	Err    error // cause, logged but never sent
	// RetryAfter, if set, is sent as the Retry-After header (whole
	// seconds, rounded up) and the problem's retry_after_ms.
	RetryAfter time.Duration
}

// Error returns the code, the detail and the cause if there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Detail)
}

// Unwrap returns the cause, so errors.Is and errors.As see through an
// *Error.
func (e *Error) Unwrap() error { return e.Err }

// problemf returns an *Error with a formatted detail.
func problemf(code api.Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// statusCodes maps the HTTP status of an echo error (an unknown route, a
// body over echo's limit) to its api code. Other statuses are
// api.CodeInternal from 500 up and api.CodeBadRequest below.
var statusCodes = map[int]api.Code{
	http.StatusNotFound:              api.CodeNotFound,
	http.StatusMethodNotAllowed:      api.CodeMethodNotAllowed,
	http.StatusRequestEntityTooLarge: api.CodeBodyTooLarge,
	http.StatusUnsupportedMediaType:  api.CodeUnsupportedMedia,
	http.StatusUnauthorized:          api.CodeUnauthorized,
	http.StatusForbidden:             api.CodeForbidden,
	http.StatusTooManyRequests:       api.CodeRateLimited,
	http.StatusServiceUnavailable:    api.CodeUnavailable,
}

// sentinelCodes maps the sentinel errors of auth, the engine and context to
// an api code and the detail sent to the client, checked in order with
// errors.Is. An empty detail sends the error's own text.
var sentinelCodes = []struct {
	target error
	code   api.Code
	detail string
}{
	{auth.ErrInvalidCredentials, api.CodeInvalidCredentials, "unknown username or wrong password"},
	{auth.ErrAccountLocked, api.CodeAccountLocked, ""},
	{auth.ErrAccountDisabled, api.CodeAccountDisabled, "this account is disabled"},
	{auth.ErrWeakPassword, api.CodeWeakPassword, ""},
	{auth.ErrNoTeams, api.CodeNoTeams, "this account is in no team"},
	{auth.ErrTooManyDevices, api.CodeTooManyDevices, ""},
	{auth.ErrDemoAccount, api.CodeDemoAccount, "demo accounts log in only to a server run with --demo"},
	{auth.ErrWrongPassword, api.CodeWrongPassword, "the current password is wrong"},
	{auth.ErrForbidden, api.CodeForbidden, ""},
	{auth.ErrTokenExpired, api.CodeTokenExpired, "access token expired; refresh it"},
	{auth.ErrRefreshReused, api.CodeRefreshReused, "refresh token already used; the device has been revoked"},
	{auth.ErrDeviceRevoked, api.CodeDeviceRevoked, "this device has been revoked"},
	{auth.ErrDeviceMismatch, api.CodeDeviceMismatch, "the device is registered to another user"},
	{auth.ErrUnauthorized, api.CodeUnauthorized, "missing or invalid credentials"},
	{auth.ErrNotFound, api.CodeNotFound, "not found"},
	{auth.ErrExists, api.CodeConflict, "already exists"},
	{auth.ErrInvalid, api.CodeBadRequest, ""},
	{dsync.ErrProtocol, api.CodeUnsupportedProtocol, ""},
	{dsync.ErrDeviceMismatch, api.CodeDeviceMismatch, "request replica does not match the token's device"},
	{dsync.ErrForbidden, api.CodeForbidden, "outside your teams"},
	{dsync.ErrNotFound, api.CodeNotFound, "not found"},
	{dsync.ErrBadCursor, api.CodeBadRequest, "malformed cursor"},
	{dsync.ErrInvalid, api.CodeBadRequest, ""},
	{dsync.ErrTooLarge, api.CodeBodyTooLarge, "change too large"},
	{dsync.ErrClosed, api.CodeUnavailable, "server shutting down"},
	{auth.ErrClosed, api.CodeUnavailable, "server shutting down"},
	{context.Canceled, api.CodeUnavailable, "request cancelled"},
	{context.DeadlineExceeded, api.CodeUnavailable, "request timed out"},
}

// classify maps an error from auth, the engine, echo or the body readers to
// an *Error.
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code, ok := statusCodes[he.Code]
		if !ok {
			code = api.CodeBadRequest
			if he.Code >= 500 {
				code = api.CodeInternal
			}
		}
		return &Error{Code: code, Detail: fmt.Sprint(he.Message), Err: err}
	}
	var xe *auth.ExternalTokenError
	if errors.As(err, &xe) { // say why, not "wrong password"
		code := api.CodeInvalidCredentials
		if errors.Is(err, auth.ErrTokenExpired) {
			code = api.CodeTokenExpired
		}
		return &Error{Code: code, Detail: "ID token refused: " + xe.Reason, Err: err}
	}
	for _, p := range sentinelCodes {
		if errors.Is(err, p.target) {
			d := p.detail
			if d == "" {
				d = err.Error()
			}
			return &Error{Code: p.code, Detail: d, Err: err}
		}
	}
	return &Error{Code: api.CodeInternal, Detail: "internal error", Err: err}
}

// errorHandler writes every error as a problem: msgpack on the sync route,
// JSON elsewhere.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := classify(err)
	p := api.NewProblem(e.Code, e.Detail)
	l := s.log.With("request_id", c.Response().Header().Get(echo.HeaderXRequestID), "code", e.Code)
	if p.Status >= 500 {
		l.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	} else if e.Err != nil {
		l.Debug("request refused", "err", e.Err)
	}
	if p.Status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="doorstep", error="invalid_token"`)
	}
	retryAfter := e.RetryAfter
	var locked *auth.LockedError
	if errors.As(err, &locked) {
		retryAfter = locked.RetryAfter
	}
	if retryAfter > 0 {
		p.RetryAfterMillis = max(1, retryAfter.Milliseconds())
		secs := (retryAfter + time.Second - 1) / time.Second
		c.Response().Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	} else if p.Status == http.StatusTooManyRequests {
		c.Response().Header().Set("Retry-After", "1")
	}
	var (
		body []byte
		ct   string
	)
	if c.Get(ctxMsgpack) == true {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		if werr := enc.Encode(p); werr != nil {
			s.log.Error("encode problem", "err", werr)
		}
		body, ct = buf.Bytes(), api.ProblemMsgpackContentType
	} else {
		body, _ = json.Marshal(p)
		ct = api.ProblemContentType
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	if werr := c.Blob(p.Status, ct, body); werr != nil {
		s.log.Debug("write problem", "err", werr)
	}
}
