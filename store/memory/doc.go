// Package memory is a store.KV held in memory: a B-tree of byte keys
// (github.com/tidwall/btree) whose copy-on-write Copy gives every read
// transaction its own snapshot in constant time. It is for tests, the
// simulation and the engine's pure-rule tests: nothing survives Close or
// the process.
//
// Semantics match the seam (package store): read transactions see one
// snapshot; one write transaction at a time (Begin(ctx, true) waits for the
// previous writer to end, or for ctx), which reads its own writes and
// publishes them all at once on Commit, or none on Discard or error; TTL
// keys read as absent once expired. MaxTxnBytes, if set, makes a write
// transaction fail with store.ErrTxnTooBig like Badger's limit, so callers'
// split paths can be tested.
//
// It imports only package store and the B-tree; nothing above store.
package memory
