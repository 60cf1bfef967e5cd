package identity

import (
	"errors"
	"fmt"
	"time"
)

// Errors callers of package auth branch on (auth re-exports each under
// the same name). Errors auth returns wrap one of them; the server maps
// each to a stable api code.
var (
	// ErrInvalidCredentials: unknown username or wrong password (the two are
	// not told apart).
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	// ErrTokenExpired: an access token whose expiry has passed. The client
	// should refresh and retry.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrUnauthorized: a token that is malformed, badly signed, of the wrong
	// algorithm, issuer or audience, signed by an unknown key, superseded by
	// a later login, or an unknown or expired refresh token.
	ErrUnauthorized = errors.New("auth: unauthorized")
	// ErrRefreshReused: a spent refresh token was presented again; the
	// device has been revoked.
	ErrRefreshReused = errors.New("auth: refresh token reused")
	// ErrDeviceRevoked: the device was revoked by an admin, or after refresh
	// token reuse.
	ErrDeviceRevoked = errors.New("auth: device revoked")
	// ErrDeviceMismatch: a login names a device registered to another user.
	ErrDeviceMismatch = errors.New("auth: device belongs to another user")
	// ErrNotFound: no such user, team or device.
	ErrNotFound = errors.New("auth: not found")
	// ErrExists: a team ID or username that is already taken.
	ErrExists = errors.New("auth: already exists")
	// ErrInvalid: an argument that fails validation (bad ID, role, team,
	// password length).
	ErrInvalid = errors.New("auth: invalid argument")
	// ErrClosed: the service has been closed.
	ErrClosed = errors.New("auth: closed")
)

// Errors of the account lifecycle.
var (
	// ErrForbidden: an admin acting outside the admin's teams (see the
	// admin model in auth's package doc).
	ErrForbidden = errors.New("auth: outside your teams")
	// ErrAccountDisabled: the user has been disabled by an admin; login,
	// refresh and access tokens are refused until enabled.
	ErrAccountDisabled = errors.New("auth: account disabled")
	// ErrAccountLocked: too many failed logins for this username; the
	// error is a *LockedError saying when to try again.
	ErrAccountLocked = errors.New("auth: account locked after failed logins")
	// ErrWeakPassword: a new password that is too short, too long, common
	// or the username.
	ErrWeakPassword = errors.New("auth: password refused")
	// ErrNoTeams: the user belongs to no team and cannot get a token.
	ErrNoTeams = errors.New("auth: user has no team")
	// ErrTooManyDevices: a login from a new device by a user who has
	// auth.Config.MaxDevicesPerUser devices already.
	ErrTooManyDevices = errors.New("auth: too many devices for this user")
	// ErrDemoAccount: a demo user (seeded by --demo) logging in to a
	// server not running in demo mode.
	ErrDemoAccount = errors.New("auth: demo account refused outside demo mode")
	// ErrWrongPassword: the current password given to change one's own
	// password is wrong.
	ErrWrongPassword = errors.New("auth: current password is wrong")
)

// LockedError is returned (wrapping ErrAccountLocked) for a login to a
// username locked after failed logins.
type LockedError struct {
	// RetryAfter is how long until the next attempt is taken.
	RetryAfter time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v; try again in %s", ErrAccountLocked, e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrAccountLocked) true.
func (e *LockedError) Unwrap() error { return ErrAccountLocked }
