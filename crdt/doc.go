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
// All three types share one state (Field: live entries plus removed IDs) and
// one merge (union both, drop removed entries), so merge is commutative,
// associative and idempotent, and applying an op is merging its one-op state.
//
// # Two offline tablets
//
// Ann and Bea both visit Mrs Jones. The record says her mobility is "stick"
// (op A). Offline, Ann writes "frame" (op B, Pred [A]) and Bea writes
// "wheelchair" (op C, Pred [A]). When both have synced, every replica holds
// entries {B, C} with A removed: Conflict is true, Winner is whichever of B
// and C has the higher ID, and a coordinator sees both. She writes "frame"
// (op D, Pred [B, C]); every replica then holds {D} alone.
package crdt
