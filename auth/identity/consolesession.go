package identity

import "time"

// ConsoleSession is one signed-in coordinator console browser, as the
// auth service keeps it (auth's consolesession.go) for the console
// (package web), which applies the expiry rules.
type ConsoleSession struct {
	// Claims are those of the access token issued at sign-in, which the
	// console re-checks (device, role, teams) on every request.
	Claims *Claims
	// UserID and Name are the user's, at sign-in.
	UserID, Name string
	// CSRF is the session's form token.
	CSRF string
	// Created is when the session began; Seen when it was last used (as
	// last written: the console writes it only when it has moved on by
	// more than a minute); Expires is Created plus the absolute lifetime,
	// after which the store forgets it.
	Created, Seen, Expires time.Time
	// PrevVisit is, per team of the claims, when the user last opened the
	// team's home before this session began (zero: never, or long ago).
	PrevVisit map[string]time.Time
}
