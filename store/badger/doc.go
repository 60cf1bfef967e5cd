// Package badger is the embedded store.KV backend on Badger/v4: one
// process, one directory, the default. It owns how Badger is opened (the
// durability, memory and encryption settings, and the recovery from an
// empty memtable file a crash can leave, see internal/badgeropen) and the
// mapping of Badger's transactions, iterators and errors onto the seam in
// package store. It knows nothing of Doorstep's key layout, which package
// store owns.
//
// Badger-only tools (backup restore's load targets, doorstep-load's raw
// ingest) reach the *badger.DB through (*Store).DB; the engine never does.
//
// # Durability
//
// Badger is opened with SyncWrites set: every transaction commit msyncs the
// active memtable's write-ahead log (and the current value-log file, which
// holds nothing since chunk form 1, so that msync finds no dirty page)
// before it returns, so anything acknowledged after a commit survives a
// crash and a power cut. What one sync costs, by transaction and memtable
// size: BenchmarkCommitSync, docs/benchmarks.md (issue 17 fifth pass). Conflict detection is off; instead write transactions
// are serialized by a writer token held from Begin to Commit or Discard
// (and for Update and DropPrefix), as the seam promises: the engine's
// committer and its few other writes (readiness ping, scrub) take turns.
//
// # Big values
//
// Badger keeps a value of its value threshold (1 MiB, the default and the
// largest) or more in its value log (*.vlog) instead of its tables, and
// neither DropPrefix nor value-log garbage collection reliably removes it
// from there: an erasure's scrub would report the keys gone while their
// values stayed in the file. So this package never hands Badger a value
// of ChunkSize (512 KiB) or more whole. On-disk chunk form 1 (chunk.go):
// such a value is a head entry under its own key, marked with user meta
// byte 0xD1 and holding the value's length, chunk count and generation,
// plus chunks under the reserved range 0x00 "chunk/" ‖ esc(key) ‖ 0x00 0x01
// ‖ generation ‖ index, each under 512 KiB and so in the tables. Keys of
// package store never start with 0x00; Set refuses keys in that range and
// iterators skip it. Get and iterators put values back together; a big
// value's chunks are committed in transactions of their own just before
// the caller's transaction (so they do not count towards its size), an
// overwrite or delete removes the old chunks, and DropPrefix(p) drops the
// chunks of every key under p. A value without the marker (written before
// chunk form 1, perhaps in the value log) reads as it is. Restore loads
// big values in chunk form (EncodeValue).
//
// It imports only package store and Badger; nothing above store.
package badger
