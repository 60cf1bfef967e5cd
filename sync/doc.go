// Package sync is Doorstep's sync engine: it validates and applies the
// change batches devices push (dedupe by per-replica seq, order, team scope,
// causality, quarantine), serves pulls by opaque cursor within the caller's
// teams, bootstraps new devices from snapshots, and offers the review API
// coordinators use (record state, history, changed-since, conflicts,
// resolve) and the admin quarantine.
//
// This package's name shadows the standard library's sync; inside it the
// standard package is imported as gosync ("gosync "sync"").
//
// sync knows nothing of HTTP or tokens: the server hands it a Caller with
// typed user, replica and team IDs it has already authenticated. It stores
// everything through package store (Badger) and merges with package crdt; it
// must not contain key-layout code (that is store's) nor merge rules (those
// are crdt's).
//
// # Durability and group commit
//
// One committer goroutine, owned by the Engine and stopped by Close, takes
// queued writes (pushes, resolves, re-applies), applies as many as are
// waiting in one Badger transaction, commits once (one fsync for the whole
// group, since the store opens Badger with SyncWrites) and only then answers
// every waiting caller. A group too big for one transaction is split in
// half until it fits. Because there is a single writer that commits groups
// in order, log positions are assigned and become visible strictly in
// order; the committer publishes the last committed position and pulls only
// serve positions at or below it, so a pull can never skip a position that
// commits later.
//
// # Erasure
//
// Erasure (removing a person's records and history, purge markers, telling
// devices to purge) is not implemented yet; api.CodeRecordErased and
// SyncResponse.Purged are reserved for it.
package sync
