// Package identity is the vocabulary of package auth that its callers
// share: the accounts, teams and devices the auth service returns
// (User, Team, Device), a verified access token's claims (Claims), the
// actor of a request and the team scope of an admin's changes (Actor,
// WithActor), the roles and their order (RoleAtLeast), and the errors
// callers branch on (ErrNotFound, ErrAccountLocked and *LockedError, ...).
//
// It exists so that the coordinator console (package web) can call the
// auth service through a small interface of its own without importing
// package auth, and so without reaching the store: package auth aliases
// every name here (auth.User is identity.User, auth.ErrNotFound is
// identity.ErrNotFound), so errors.Is and type identity hold across both.
//
// It owns type definitions and the pure rules on them (an admin's scope:
// see auth's package doc). It must not read or write storage, hold keys,
// sign or verify tokens, or import anything of ours beyond api and crdt.
package identity
