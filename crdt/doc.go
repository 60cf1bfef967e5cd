// Package crdt holds Doorstep's replicated data types as pure values: the
// hybrid logical clock, op IDs, and the merge of field registers, sets and
// logs into record states.
//
// It owns no I/O, starts no goroutines and never reads the system clock (a
// Clock is handed a wall-time function). It imports nothing of Doorstep's and
// nothing outside the standard library but msgpack. Storage, transport and
// validation live in the packages above it.
//
// # Field types
//
// Every op names one field of one record and has a Kind that fixes the
// field's type:
//
//   - Register (KindWrite): a multi-value register. A write names in Pred the
//     entries it overwrites (the values the writer saw). Concurrent writes all
//     survive; Winner returns the one with the highest op ID, Entries the full
//     set, and Conflict reports more than one. A write whose Pred covers all
//     of them resolves the conflict.
//   - Set (KindAdd, KindRemove): an add-wins observed-remove set. An add's ID
//     is its tag; a remove names the tags it saw, so an add made concurrently
//     elsewhere survives.
//   - Log (KindAppend): append-only entries ordered by op ID, never
//     overwritten; corrections are new entries.
//
// A delete is a register write of true to DeletedField whose Pred names every
// live entry of the record. An edit the deleter had not seen is kept and
// reported by DeleteConflicts, never silently lost.
//
// Which values a register write may overwrite is policy, not merge: Apply
// accepts any Pred. Record.Write builds a resolving write (Pred = every live
// value). The rule above this package is that an ordinary edit never
// removes another author's concurrent value from a conflict: the client
// SDK's plain Set on a field in conflict names only its own replica's
// values in Pred, and on clinical fields the SDK refuses it and the sync
// engine quarantines or refuses writes that would (see package schema's
// settled_by and docs/PROTOCOL.md §11.1).
//
// # State (version 2): live entries plus a causal context
//
// A record's state is its fields' live entries and one causal context for
// the whole record, so that its size is proportional to the live values
// plus the number of replicas that ever wrote to the record, whatever the
// number of edits (delta-state CRDTs: Almeida, Shoker and Baquero, "Delta
// state replicated data types", 2018, with the causal context compressed
// to a version vector):
//
//   - Record.Clock: for each replica that wrote to the record, the highest
//     op time applied. The state has applied every op of that replica up
//     to it, except the Skipped ones (below). An applied op that is not
//     live was overwritten or removed: that is all the state needs to
//     know about it, so no list of removed IDs is kept.
//   - Record.Skipped: ops held back (a server quarantining an op while it
//     merges the same device's later ops). Covers is false for them,
//     though the clock has passed them.
//   - Field.Pending: IDs a pred named before the op arrived (a remove
//     seen before the add it removes). Empty under causal delivery.
//   - Record.DeleteSeen: what deletes and restores named in pred, kept
//     only for entries still live (or not yet applied): the rest can
//     never be live again. DeleteConflicts reads it.
//
// Applying op X of replica R: if the context covers X it is a copy (of
// an op applied, live or since replaced) and changes nothing; otherwise
// the clock moves to X, its preds remove the live entries they name from
// its field (the rest become pending), and its entry goes live unless a
// pred named it first. Merging two states: an entry both hold stays; an
// entry one holds stays unless the other covers it (and so replaced it)
// or holds it pending; clocks take the maximum; pending and skipped IDs
// the result covers go; DeleteSeen is the union, kept to live or
// uncovered IDs. This is the causal-context merge of a dot store, which
// is commutative, associative and idempotent; the property tests check
// it on every random history, with Skipped ops too, and check that every
// state shows exactly what the version 1 representation (every removed
// ID listed per field, kept in the tests as a reference model) shows for
// the same ops: live entries, winners, members, conflicts, deletion and
// delete conflicts.
//
// # Delivery order: each replica's ops in ID order, per record
//
// A version vector stands for "every op of R up to t" only if each
// replica's ops reach a record in the order of their IDs. Apply takes
// that as given: an op of R older than the clock's entry for R that is
// not live reads as a copy of an op already replaced, and is dropped.
// Ops of different replicas may interleave in any order, repeat, and
// arrive before or after the ops their preds name. Doorstep's paths
// keep the order:
//
//   - Pushes: a device's HLC never goes back (it is stored with every
//     write), its changes carry seqs 1, 2, 3... and the server refuses a
//     gap and skips a repeat, so each device's ops reach the server in
//     ID order; within a change the engine merges a record's ops sorted
//     by ID (Batch).
//   - Pulls: the server log holds changes in commit order, so each
//     writer's ops in its order; pages end on change boundaries.
//   - Bootstrap snapshots: a snapshot is a merged state (its clock is
//     sound where each input's was), and the log after its cursor holds
//     only later changes.
//   - Resolve by the server replica: IDs are taken inside the single
//     committer, from the server's clock or, if that is behind, just
//     after the record's newest op (Record.MaxTime), so the server's own
//     ops are in ID order per record even if its wall clock went back
//     over a restart.
//   - Quarantine and reapply: the one path that breaks the order. A
//     quarantined op X of R is held back while R's later ops merge, so
//     the server marks X Skipped in the record (its own context stays
//     true, and a snapshot it serves keeps X live on R's tablet). Devices
//     pulling the log cannot tell: their clocks pass X. So a reapply
//     merges X as it is only if the record has no later op of R (the
//     order still holds); otherwise it merges a copy as a new op of the
//     server replica, same field, kind and value, whose pred names X as
//     well (for an add or append too: such a pred replaces the entries
//     it names), so that R's tablet, which holds X, replaces it and every
//     replica holds one copy. An X that a later pred already named is
//     pending in its field and merges as it is, changing nothing.
//   - Erasure removes a record's state and ops everywhere; nothing of it
//     is merged again (purge markers refuse late ops).
//   - Epoch restore (a server restored from backup): devices re-send
//     their acknowledged changes, in seq order (each device's ops in
//     order, and newer than anything the restored state covers for that
//     device), or their record states, which merge as states do.
//
// Anything else feeding a Record must keep the same order or use Skip.
// Should a faulty replica reuse an op ID for two different values, every
// replica keeps the bytewise greater one, so they still converge.
//
// Merging N ops into one field costs O(N log N), not O(N²): a Batch queues
// the ops of a change (or a pulled page) for one record and merges each
// field once at Flush, with the result of applying them one by one; and
// Apply appends a replica's own newer add or append in place. The sync
// engine and the SDK apply what they receive through a Batch.
//
// Values are opaque msgpack bytes compared bytewise (a set's elements, the
// delete flag), so build them with EncodeValue or MustValue, which write
// integers compactly and sort the keys of map[string]any, map[string]string
// and map[string]bool (other maps come out in Go's random order: use
// structs). A written nil (0xc0) is a value like any other: writing nil
// clears a field visibly.
//
// # Encoding
//
// MarshalOp, MarshalRecord, AppendOp and AppendRecord write msgpack maps
// with one-letter keys, without reflection. An op's IDs are 24-byte bins
// (8-byte HLC time, 16-byte replica). Record encodings are canonical:
// equal states encode to equal bytes, fields in sorted name order. The
// EncodeMsgpack and DecodeMsgpack methods use the same forms, so ops and
// records inside other msgpack messages (package api) match. Decoders
// skip keys they do not know, so newer peers may add some, and accept any
// msgpack-equivalent form (other integer widths, str8 keys). Decoded
// values never alias the input buffer.
//
// # State encoding, version 2 (StateVersion)
//
// A record state is a map with keys, in this order:
//
//	c  collection          r  record ID          t  team
//	z  2 (the version; version 1 states have no "z")
//	w  replica table: bin of 16-byte replica IDs, sorted, every replica
//	   the state names; an ID below is [index into w, time delta]
//	b  base time: the lowest time the state names (uint)
//	v  clock: [index, time - b] pairs, in table order
//	f  fields: map name → {y: type, e: entries, p: pending (if any)};
//	   e is flat [index, time delta, value] triples in ID order, each
//	   time delta from the previous entry's time (the first from b)
//	d  DeleteSeen, s  Skipped (each only if not empty): [index, time
//	   delta] pairs in ID order, deltas as in e
//
// An entry costs its value plus 2-10 bytes instead of the 31 of a full
// {i: 24-byte ID, v: value} map. Version 1 ({c, r, t, f: {name: {y,
// e: [{i, v}], x: removed IDs}}}, written by Doorstep before this
// version) is still read: UnmarshalRecord converts it, taking the clock
// as the highest time per replica among every ID it lists (such states
// were built by the same in-order paths) and DeleteSeen as the delete
// register's removed IDs still live. Stores move to version 2 through
// their layout versions (package store, and the SDK's store).
//
// # Outside bytes
//
// msgpack/v5 preallocates whatever length a prefix declares and recurses on
// nesting, so a few hostile bytes can ask it for gigabytes or exhaust the
// stack. CheckLimits walks one msgpack value iteratively, without
// allocating, and refuses truncated or trailing bytes (ErrMalformed) and
// anything deeper, longer or bigger than its Limits (ErrTooLarge). Call it
// on every request body before decoding; UnmarshalOp and UnmarshalRecord
// call it themselves with DefaultLimits, then check what they decoded (Op's
// and Record's Validate). No decoder here panics on bad input.
//
// # Two offline tablets
//
// Ann and Bea both visit Mrs Jones. The record says her mobility is "stick"
// (op A). Offline, Ann writes "frame" (op B, Pred [A]) and Bea writes
// "wheelchair" (op C, Pred [A]). When both have synced, every replica holds
// entries {B, C} with A removed: Conflict is true, Winner is whichever of B
// and C has the higher ID, and a coordinator sees both. She writes "frame"
// (op D, Pred [B, C]); every replica then holds {D} alone. The package's
// Example_twoOfflineTablets runs exactly this.
//
// # Proof
//
// The tests simulate replicas with their own clocks making ops from their
// own state and exchanging them (each writer's ops in its order, with
// repeats), and check on at least 10,000 random cases
// (go test ./crdt -args -long for 50 times more; -args -seed N replays)
// that merge is commutative, associative and idempotent on the encoded
// bytes, that replicas applying the same ops in any interleaving (each
// writer's ops in order) with duplicates converge, that merging states
// equals applying all ops, that every state agrees with a naive reference
// model and, differentially, with the version 1 representation fed the
// same ops (and with its version 1 encoding converted), that an op held
// back (Skip) and applied late gives the in-order state, and that a Batch
// equals applying its ops one by one. Fuzz targets cover every decoder
// and CheckLimits.
//
// # For the storage seam (issue 13)
//
// A record state is one value: MarshalRecord bytes (state version 2),
// read whole with UnmarshalRecord and written whole. A store needs no
// per-op key: Record.Has answers whether an op is merged or a pred
// exists. Its size is bounded by live values and writers, so reading and
// rewriting it per change costs what the record holds, not its history.
package crdt
