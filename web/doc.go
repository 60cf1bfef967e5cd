// Package web is the coordinator console: server-rendered HTML pages,
// under /console/, over the same sync engine and auth service as the JSON
// API. Coordinators review their teams' merged records (what changed and
// who changed it, conflicts side by side, a record's history, outcomes)
// and settle conflicts; admins also see devices, the quarantine and users.
//
// It owns the console's sessions (server-side, in memory, with idle and
// absolute expiry), its cookies (HttpOnly, SameSite=Strict, Secure over
// TLS or behind a trusted TLS proxy), CSRF tokens on every form, and the
// templates and stylesheet, embedded with go:embed. Pages work with
// JavaScript off: every action is a plain form.
//
// It must not contain sync logic or talk to the store: every read and
// write goes through the engine's review queries (package sync) and the
// auth service, with the same team scoping as the JSON API. Imports:
// sync, auth, api, schema, crdt (values), never store or Badger.
package web
