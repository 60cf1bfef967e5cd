// Package sync is Doorstep's sync engine: it validates and applies the
// change batches devices push (dedupe by per-replica seq, order, team scope,
// causality, quarantine), serves pulls by opaque cursor within the caller's
// teams, bootstraps new devices from snapshots, and offers the review API
// coordinators use (record state, history, changed-since, conflicts,
// resolve) and the admin quarantine.
//
// This package's name shadows the standard library's sync; inside it the
// standard package is imported as gosync (import gosync "sync").
//
// sync knows nothing of HTTP or tokens: the server hands it a Caller with
// typed user, replica and team IDs it has already authenticated. It stores
// everything through package store's seam (store.KV: Badger by default,
// memory in tests, PostgreSQL for several servers; the caller opens it and
// passes it in Options.Store) and merges with package crdt; it must not
// contain key-layout code, index upkeep or value decoding (those are
// store's: store.PutRecord, store.DeleteRecord, store.PutLogEntry,
// store.DecodePulledEntry...) nor merge rules (those are crdt's), and it
// imports no storage engine. sync decides which search terms a record
// state carries (index.go); store keeps the entries.
//
// The types the review API speaks (Caller, ChangedFilter, HistoryEntry,
// FieldConflict, QuarantinedOp...) and its sentinel errors are defined in
// the leaf package sync/review and aliased here, so that the console
// (package web) can call the engine through an interface of its own
// without importing this package and, through it, the store.
//
// # Durability and group commit
//
// One committer goroutine, owned by the Engine and stopped by Close, takes
// queued writes (pushes, resolves, re-applies), applies as many as are
// waiting in one write transaction (KV.Begin), commits once (one fsync for
// the whole group: a store's Commit returns once durable; Badger is opened
// with SyncWrites) and only then answers every waiting caller. A group too
// big for one transaction (store.ErrTxnTooBig) is split in half until it
// fits; the committer remembers the least weight the store refused and
// splits a group that heavy before trying it. Write transactions are serialized by the store (across processes
// on a shared one), and each group reads the last log position and
// quarantine ID inside its own transaction, so positions are assigned and
// become visible strictly in order. A pull serves positions up to the last
// one its own read snapshot holds (m/logpos read in that snapshot, which
// holds a prefix of the commits), so a pull can never skip a position that
// commits later, in this process or another.
//
// # Several processes on one store
//
// When the store is shared (KV.Shared: PostgreSQL behind several doorstep
// serve processes), the engine keeps nothing in memory that another
// process could make stale: the log position, quarantine ID and floor are
// read in each transaction (as above, on every backend); ops the server
// stamps itself (resolves, re-applies) take a time past m/server-clock,
// read and written in the stamping transaction, since every process shares
// the one server replica ID; the epoch is read at open and changes only by
// a restore, which stops every server. What stays per process: the HLC
// (only a lower bound, moved past m/server-clock before each stamp), the
// scrub/backup coordination (a shared store's scrub drops only deleted
// keys, see scrub.go), and the clinical rules and schema (configuration,
// the same on every server). The term index backfill at open is
// idempotent. Stats and review reads hold no cache; the console's
// outcomes cache (package web) is keyed by TeamVersion, read from the
// store on every request, so it follows other processes' commits.
//
// # What a push checks
//
// Per change: seq equal to the replica's high-water mark + 1 is applied; a
// lower seq is a duplicate (acknowledged, nothing applied again); a higher
// one is refused with api.CodeSeqGap and the expected seq. Per op, in order:
// shape (crdt Op.Validate) → invalid_op; record ID outside
// crdt.ValidateRecordID → invalid_record_id; op ID naming another replica →
// wrong_replica; team not the caller's → forbidden_team (these first
// checks, and the Validator's verdict used below, need no stored state
// and run in the pushing request's goroutine, before the committer: for
// a pipelined push, before the request ahead of it has committed, see
// PrepareSync in prepare.go);
// record owned by
// another team → wrong_team; record erased → record_erased (not kept in
// the quarantine); op ID already merged → skipped silently if the op is an
// exact copy, op_id_reused if its content differs; a pred the
// server has neither merged nor quarantined (nor earlier in the change) →
// unknown_pred; stamped more than MaxSkew ahead → quarantined clock_skew;
// Validator error → quarantined invalid_value or unknown_field; a write to
// a clinical field in conflict (ClinicalRules) whose pred covers every
// live value from a role the field's settled_by lacks → resolve_forbidden,
// or whose pred covers some, one of them another replica's →
// quarantined conflict_in_review (clinical.go); a field type the record
// already has otherwise → invalid_op; growing the record or the field
// past Bounds → record_too_large. Refused ops are kept in the quarantine
// too (not re-appliable) as one summary per change and code, without
// their values, so nothing a device sent vanishes unrecorded and a flood
// of them costs a few small entries; the rest of the change is applied.
// The reply carries (Replace) the records of clinical refusals, states the
// caller's scope (Scope), and a change pushed again as a duplicate reports
// its ops not merged again (reported.go; kept per replica, codes only).
//
// # Admission: pure decisions
//
// What a pushed change does is decided by admitChange (admit.go), a pure
// function of a small read interface, admissionView (a replica's
// high-water, a record's owner, purge marker, state and size estimate,
// whether an op ID is quarantined, the op merged under an ID, quarantine
// usage, the op results kept for a resent change), the caller, the
// change and the transaction's time. It writes nothing and hands back a
// changeDecision value: the change's result, the ops to merge (checked
// and queued per record in crdt batches), the quarantine entries to
// write (encoded, charged, within quota), the new size estimates and
// whether the high-water moves. Ops earlier in the change are seen
// through a per-change overlay (changeView: records claimed, sizes and
// quota used). The committer is a thin layer (admitview.go): txnView
// reads through the transaction's caches, applyChange stores the
// decision. Reapply shares checkOp and clinicalCheck. admit_test.go tests
// every refusal code over a map-backed view, with no store, and checks
// that random pushes decided over the map agree with a real engine.
//
// A record's consecutive ops in a change are read once per run (owner,
// purge marker, state, size, batch). A run that looks like a new record's
// first change is merged and encoded ahead, in the pushing request's
// goroutine, into a blank record (mergeAhead); admitChangeRuns still
// checks each of its ops, and takes the state merged ahead only if the
// record is blank in the view and every op passes, so the decision is the
// one admitChange makes without it (admitref_prop_test.go holds both to
// the admission as it was before, kept in admitref_test.go); once a
// run's first op has taken it, the rest of its ops need only the two
// checks that can still refuse one of them (an ID used earlier in the
// change, clock skew: acceptRun) and go the usual way from the first
// that fails. A run of
// the usual shape (each field written once, no pred) is encoded straight
// from its ops (crdt.AppendNewState) and its Record is built only if the
// transaction reads the record again (recState.state). The purge markers
// of the records a commit group merged ahead are read in one walk of the
// p/ range as its transaction starts (erasedread.go), not one point read
// per new record.
//
// # Bounds
//
// Bounds cap a record's and a field's encoded size (estimated from above
// per op, exact again whenever the record is read), so that every record
// fits a pull page a device can decode, and the quarantine per pushing
// device and per team (entries and bytes; a would-be quarantined op past
// a quota is refused with quarantine_full). Quarantine entries expire
// after Bounds.QuarantineTTL: the committer sweeps them every
// QuarantineSweep, in the same transactions as writes.
//
// # Small writes first
//
// A commit group's small writes commit in one transaction before its
// large pushes (256 ops or KiB and up), so a device's 1-op sync waits for
// at most the large commit already running, not for those queued with it.
//
// # Pulls and history
//
// Each applied change gets one log position and one log entry per team it
// touches; a pull merges the caller's team logs after its cursor (skipping
// the caller's own changes), so its cost grows with what changed since,
// not with history. A record's history is the log entries that touched it,
// found through a per-record index of positions; ops are stored once.
//
// # Erasure
//
// Engine.Erase (an admin operation, through the committer, so it is
// ordered with pushes and durable before it returns) removes a record and,
// with cascade, the team's records referencing a person: their states,
// their ops from every log entry (rewritten, or deleted when left empty;
// positions are never reused, so cursors neither skip nor repeat), their
// history, changed-since, conflict and team index entries and quarantined
// ops. A purge marker refuses later ops with api.CodeRecordErased, and an
// erasure entry in the team log reaches devices as SyncResponse.Purged on
// their next pull. A reply that refuses a pushed op or a restated state
// because of a purge marker names the record in Purged too, for a device
// that will never pull the erasure. See store's package documentation for
// the keys.
//
// # Erasure on disk
//
// Before Erase returns, the committer scrubs the erasure from the data
// files (scrub.go): every version of the keys it touched is dropped with
// the store's DropPrefix (Badger's) and the log entries that kept other
// records' ops are written back (held under s/ keys meanwhile, so a crash
// loses nothing). Pulls wait for a scrub; while a backup transaction is
// open the scrub waits for it instead (BackupTxn). On a shared store only
// the deleted keys are dropped (scrubShared).
//
// # Epochs and restate
//
// The store has an epoch ID, new after every restore (store.NewEpoch). A
// request naming another epoch is answered with the current one and
// nothing applied or pulled; the device then re-sends its record states
// (restate, epoch.go), which merge entry by entry under a push's checks
// and are logged as restate entries that pulls serve as snapshot records;
// the last page re-bases the replica's high-water seq. See
// docs/PROTOCOL.md §13.
//
// # Readiness
//
// Engine.Ping writes a meta key in its own durable transaction, outside the
// committer queue, so a readiness probe proves the store writable without
// waiting behind a large commit group.
package sync
