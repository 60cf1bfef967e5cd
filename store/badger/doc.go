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
// Badger is opened with SyncWrites set: every transaction commit fsyncs the
// value log before it returns, so anything acknowledged after a commit
// survives a crash. Conflict detection is off; instead write transactions
// are serialized by a writer token held from Begin to Commit or Discard
// (and for Update and DropPrefix), as the seam promises: the engine's
// committer and its few other writes (readiness ping, scrub) take turns.
//
// It imports only package store and Badger; nothing above store.
package badger
