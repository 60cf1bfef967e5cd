package auth

import "github.com/doorstep-health/doorstep/auth/identity"

// Errors callers branch on, defined in package identity (which the
// console shares without importing auth) and re-exported here: each is
// the same value, so errors.Is holds across both names. Errors returned by
// this package wrap one of them; the server maps each to a stable api code.
// See package identity for what each means.
var (
	ErrInvalidCredentials = identity.ErrInvalidCredentials // unknown username or wrong password
	ErrTokenExpired       = identity.ErrTokenExpired       // access token past its expiry: refresh and retry
	ErrUnauthorized       = identity.ErrUnauthorized       // bad, superseded or unknown token
	ErrRefreshReused      = identity.ErrRefreshReused      // a spent refresh token again: the device is revoked
	ErrDeviceRevoked      = identity.ErrDeviceRevoked      // the device was revoked
	ErrDeviceMismatch     = identity.ErrDeviceMismatch     // a login names another user's device
	ErrNotFound           = identity.ErrNotFound           // no such user, team or device
	ErrExists             = identity.ErrExists             // team ID or username already taken
	ErrInvalid            = identity.ErrInvalid            // an argument fails validation
	ErrClosed             = identity.ErrClosed             // the service has been closed
)

// Errors of the account lifecycle (see package identity).
var (
	ErrForbidden       = identity.ErrForbidden       // an admin acting outside the admin's teams
	ErrAccountDisabled = identity.ErrAccountDisabled // the user is disabled
	ErrAccountLocked   = identity.ErrAccountLocked   // too many failed logins; a *LockedError
	ErrWeakPassword    = identity.ErrWeakPassword    // a new password is refused
	ErrNoTeams         = identity.ErrNoTeams         // the user belongs to no team
	ErrTooManyDevices  = identity.ErrTooManyDevices  // a new device past Config.MaxDevicesPerUser
	ErrDemoAccount     = identity.ErrDemoAccount     // a demo user outside demo mode
	ErrWrongPassword   = identity.ErrWrongPassword   // the current password given is wrong
)
