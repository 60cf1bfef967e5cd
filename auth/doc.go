// Package auth is Doorstep's built-in identity issuer: users with roles and
// teams, teams, devices (replicas) bound to users, rotating device-bound
// refresh tokens, and Ed25519-signed JWT access tokens.
//
// It keeps its state in its own store.KV (separate from the record
// store's), which the caller opens and hands to New: Badger for one server,
// or a shared store (PostgreSQL) for several. Its key layout (users,
// usernames, devices, the userdev/ index, refresh tokens, failed-login
// counts, the audit trail, the console's sessions) is in service.go,
// lockout.go, audit.go and consolesession.go. It
// also owns the signing keys in a key directory. It verifies tokens with the
// algorithm pinned to EdDSA, expiry required, issuer and audience checked
// and the key looked up by kid.
//
// # Several servers on one store
//
// Every check a request depends on reads the store, in the request's own
// read-only transaction (Authorize, CheckDevice, Narrow, Refresh): the
// device's revocation and generation, the user's role, teams and disabled
// state, the refresh chain. No Service keeps a cache that a write through
// another could leave stale, so a device revoked through one server is
// refused by every server sharing the store from its next request. Failed
// logins are counted in the store too, so a lockout holds across servers
// and restarts, and audit seqs are taken in the writing transaction, which
// the store serializes, so two servers never take the same one. On a
// shared store the signing keys are in the store as well as in each
// server's key directory, so every server verifies every other one's
// tokens (sharedkeys.go). The coordinator console's sessions are kept
// here too (consolesession.go: under the SHA-256 of the token, with a TTL
// at the absolute expiry, a bounded number per user), so any server
// serves any console session; the console (package web) applies the
// expiry rules. They are left out of backups (BackupTxn).
//
// An external OpenID Connect issuer (ExternalIssuer, e.g. NHS CIS2) may be
// configured: Exchange then accepts its ID tokens, checked against its JWKS,
// in place of a password, and provisions the user from the token's role and
// teams claims. The tokens Doorstep issues are the same either way.
//
// auth must not import echo, the sync engine or the server: it is called by
// the server, which maps the sentinel errors here to api codes.
//
// # Devices and refresh chains
//
// A login binds the returned tokens to a device (its replica ID). Each
// refresh spends the presented token and returns its successor, so a device
// has one live refresh token at a time. Presenting a spent token again
// (outside a short grace window for a reply the device never received)
// revokes the device: its refresh fails and its access tokens are refused by
// CheckDevice at once. A user may lift a reuse revocation by logging in again
// with the password, which starts a new generation; access tokens of earlier
// generations stay refused. A revocation by an admin is permanent for that
// replica ID.
//
// # Admin model
//
// Every admin is a team admin, scoped to the teams on their account; the
// operator's command line (ServiceActor) is the unscoped service admin.
// The scope is taken from the Actor in the context (WithActor), which the
// server sets on every authenticated request: an admin sees users who share
// a team, manages (role, name, password, disable, delete) only users all of
// whose teams are the admin's, and moves users in and out of the admin's
// own teams only. See scope.go for the rules and ErrForbidden.
//
// # Account lifecycle
//
// Users can be disabled and enabled, deleted (a tombstone that keeps the
// leaver's records attributed, frees the username and revokes every
// device), have their password reset by an admin or changed by
// themselves, and log a device out (ending its refresh chain). Logins are
// refused for users in no team, demo users outside demo mode, and a
// device past the per-user bound; failed logins lock a username for a
// growing while. New passwords must pass CheckPassword.
//
// # Audit trail
//
// auth owns the append-only audit trail (audit.go, layout version
// AuditLayoutVersion): account changes are recorded in the same
// transaction as the change, and other packages record theirs (record
// reads, resolutions, erasures) with Service.Audit, whose concurrent calls
// share one durable commit (group commit). AuditLog reads it, filtered and
// scoped to an admin's teams. The entry type is api.AuditEntry (the wire
// form of GET /v1/admin/audit), aliased here.
//
// # Shared vocabulary
//
// The types callers hold (User, Team, Device, Claims, Actor and its scope
// rules, LockedError), RoleAtLeast and every sentinel error are defined in
// the leaf package auth/identity and aliased here, so that the console
// (package web) can call the service through an interface of its own
// without importing this package and, through it, the store.
package auth
