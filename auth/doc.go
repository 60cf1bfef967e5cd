// Package auth is Doorstep's built-in identity issuer: users with roles and
// teams, teams, devices (replicas) bound to users, rotating device-bound
// refresh tokens, and Ed25519-signed JWT access tokens.
//
// It owns its own Badger instance (separate from the record store) and the
// signing keys in a key directory. It verifies tokens with the algorithm
// pinned to EdDSA, expiry required, issuer and audience checked and the key
// looked up by kid.
//
// An external OpenID Connect issuer (ExternalIssuer, e.g. NHS CIS2) may be
// configured: Exchange then accepts its ID tokens, checked against its JWKS,
// in place of a password, and provisions the user from the token's role and
// teams claims. The tokens Doorstep issues are the same either way.
//
// auth must not import echo, the sync engine or the server: it is called by
// the server, which maps the sentinel errors here to api codes.
//
// The store's key layout is versioned (key meta/layout, CurrentLayout):
// Open runs the migrations from an older layout (internal/layout) and
// refuses one written by a newer build with ErrNewerLayout. It opens
// Badger through internal/badgeropen, which recovers from an empty
// memtable file left by a kill.
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
package auth
