// Package web is the coordinator console: server-rendered HTML pages,
// under /console/, over the same sync engine and auth service as the JSON
// API. Coordinators review their teams' merged records (what changed and
// who changed it, conflicts side by side, a record's history, outcomes)
// and settle conflicts; admins also see devices, the quarantine and users.
//
// It owns the console's session rules (idle and absolute expiry, a
// bounded number per user, CSRF tokens on every form, a session's
// device, role and teams re-checked on every request), a cache of each
// team's outcome export, its cookies (HttpOnly, SameSite=Strict, Secure
// over TLS or behind a trusted TLS proxy), and the templates and
// stylesheet, embedded with go:embed. Pages work with JavaScript off:
// every action is a plain form.
//
// The sessions themselves, and each coordinator's "last visit" mark, are
// kept by a SessionStore (the auth service, in the auth store, keyed by
// the SHA-256 of the session token): they survive a restart, and every
// server sharing the auth store serves every session, so a proxy in
// front of several servers needs no affinity for /console/. A request
// reads its session; it writes it back only when its last use has moved
// on by more than a minute (see session.go).
//
// The record page shows an attachment field's files: JPEG and PNG as
// thumbnails (the browser scales the file; no server-side resizing), PDFs
// and HEIC photos as download links, "pending upload" while the server
// does not hold the whole file. The files are served by a console route
// under the record (…/records/{collection}/{id}/attachments/{field}/{sha256}),
// behind the session like every page: the record must be readable by the
// viewer and must name the file in that field, and each file served is
// audited as a read of the record. There is no public URL for a file.
//
// It must not contain sync logic or talk to the store: every read and
// write goes through the engine's review queries and the auth service,
// with the same team scoping as the JSON API; reads of records and
// resolutions go into the auth service's audit trail. A browser signs in
// as a device of its user (Auth.Login), so the account rules (lockout,
// disabled accounts) and device revocation apply as to a tablet.
//
// The engine and the auth service come in as small interfaces of this
// package, Engine, Auth and SessionStore (the server wires in
// *sync.Engine and *auth.Service and asserts that they satisfy them),
// written in the
// engine's and auth's vocabularies: package sync/review (Caller, the
// review types, the engine's sentinel errors) and package auth/identity
// (users, devices, claims, the actor, auth's errors), which sync and auth
// alias. Imports: sync/review, auth/identity, api, schema, crdt for the
// types of record states and op IDs, and blob for the attachment store's
// types (read through the Blobs interface); never sync, auth, store,
// Badger or pgx (the before-stop hook checks with go list -deps).
package web
