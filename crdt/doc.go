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
// All three types share one state (Field: live entries plus removed IDs) and
// one merge (union both, drop removed entries), so merge is commutative,
// associative and idempotent, and applying an op is merging its one-op state.
// Should a faulty replica reuse an op ID for two different values, every
// replica keeps the bytewise greater one, so they still converge.
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
// with one-letter keys (see the struct tags) and IDs as 24-byte bins,
// without reflection. Record encodings are canonical: equal states encode to
// equal bytes, fields in sorted name order. The EncodeMsgpack and
// DecodeMsgpack methods use the same form, so ops and records inside other
// msgpack messages (package api) match. Decoders skip keys they do not know,
// so newer peers may add some. UnmarshalOp and UnmarshalRecord read this
// package's own form straight from the bytes and fall back to the msgpack
// decoder for any other equivalent form; the two agree on every input.
// Decoded values never alias the input buffer.
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
// own state and exchanging them, and check on at least 10,000 random cases
// (go test ./crdt -args -long for 50 times more; -args -seed N replays)
// that merge is commutative, associative and idempotent on the encoded
// bytes, that replicas applying the same ops in any order with duplicates
// converge, that merging states equals applying all ops, and that every
// state agrees with a naive reference model. Fuzz targets cover every
// decoder and CheckLimits.
package crdt
