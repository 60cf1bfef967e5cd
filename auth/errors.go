package auth

import "errors"

// Errors callers branch on. Errors returned by this package wrap one of them;
// the server maps each to a stable api code.
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
