package store

import (
	"context"
	"errors"
	"time"
)

// The storage seam. Everything the engine (package sync) and the auth
// service store goes through KV: an ordered, transactional key-value store
// of byte keys and byte values. This package owns the key layout and the
// value encodings on top of it; a backend package (store/badger,
// store/memory, store/postgres) owns only transactions, ordering and
// durability, so the layout is specified once, here, whatever the engine
// underneath.

// Errors every backend returns (wrapped or not) for what callers branch on.
var (
	// ErrNotFound: Get of a key that is not stored.
	ErrNotFound = errors.New("store: key not found")
	// ErrTxnTooBig: the transaction holds more writes than the backend can
	// commit at once (Badger's transaction limit). The caller splits its
	// work and retries; nothing of the failed transaction was applied.
	ErrTxnTooBig = errors.New("store: transaction too big")
	// ErrConflict: a concurrent transaction wrote a key this one read
	// (backends with optimistic concurrency); retry the whole transaction.
	ErrConflict = errors.New("store: transaction conflict")
	// ErrReadOnly: a write in a read-only transaction.
	ErrReadOnly = errors.New("store: read-only transaction")
	// ErrUnsupported: the backend cannot do this (for example a Badger
	// stream backup of a PostgreSQL store).
	ErrUnsupported = errors.New("store: not supported by this backend")
)

// KV is a transactional, ordered key-value store: the one interface at the
// storage seam.
//
// Isolation: a read-only transaction sees one consistent snapshot. Write
// transactions are serialized: at most one commits at a time, and on a
// shared backend (Shared reports true) that holds across every process
// using the store, so a write transaction that reads a counter, bumps it
// and commits never races another process doing the same. A reader's
// snapshot therefore always holds a prefix of the committed write
// transactions, in commit order.
//
// Durability: Update and Txn.Commit return nil only once the writes are
// durable (fsynced) and visible to every later transaction.
type KV interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a write transaction and commits it when fn returns
	// nil; an error from fn discards every write.
	Update(ctx context.Context, fn func(Tx) error) error
	// Begin opens a transaction the caller must end with Commit or
	// Discard (Discard after Commit is a no-op). ctx bounds its I/O.
	Begin(ctx context.Context, update bool) (Txn, error)
	// DropPrefix deletes every key starting with one of prefixes, and
	// where the backend keeps older versions of keys on disk, those
	// versions too (erasure must leave no copy in the data files). It
	// must not run inside or concurrently with a write transaction the
	// caller holds.
	DropPrefix(ctx context.Context, prefixes ...[]byte) error
	// Shared reports whether other processes may write this store at the
	// same time (PostgreSQL). The engine then keeps no counter or cache
	// in memory that another process could make stale: it reads them in
	// each transaction.
	Shared() bool
	// Close releases the store. Transactions must have ended.
	Close() error
}

// Tx is an open transaction.
type Tx interface {
	// Get returns the value stored under key, or ErrNotFound. The
	// returned slice belongs to the caller.
	Get(key []byte) ([]byte, error)
	// Set stores value under key (key and value may not be modified by
	// the caller until the transaction ends).
	Set(key, value []byte) error
	// SetWithTTL is Set for a key that expires after ttl: after that it
	// reads as not stored (reading it is what counts; the space may be
	// reclaimed later).
	SetWithTTL(key, value []byte, ttl time.Duration) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	// Iterate returns an iterator over the keys starting with
	// opts.Prefix, in byte order (reverse order if opts.Reverse). A
	// transaction's own writes made before Iterate are seen. Whether
	// writes it makes while the iterator is open are seen is
	// unspecified: callers may delete or rewrite the key an iterator is at
	// or keys it has passed, but not write keys ahead of it in its range.
	// The caller must Close it.
	Iterate(opts IterOptions) Iterator
}

// Txn is a transaction opened with KV.Begin.
type Txn interface {
	Tx
	// Commit commits the writes (durably, see KV); after it, or after
	// any error from it, the transaction has ended.
	Commit() error
	// Discard ends the transaction without committing.
	Discard()
}

// IterOptions configure Tx.Iterate.
type IterOptions struct {
	// Prefix limits the iterator to keys starting with it (nil: all keys).
	Prefix []byte
	// Reverse iterates from the largest key down.
	Reverse bool
	// KeysOnly: the caller reads no values (a backend may skip fetching
	// them; Value then still works, perhaps more slowly).
	KeysOnly bool
	// Batch is how many entries the caller expects to read, a hint for
	// prefetching (0: the backend's default).
	Batch int
}

// Iterator walks the keys of one prefix. A new iterator is not positioned:
// call Rewind or Seek before reading it.
type Iterator interface {
	// Seek moves to the first key at or after key (at or before key if
	// Reverse) within the prefix. key need not start with the prefix: a
	// key ordered before the prefix's keys puts a forward iterator on the
	// first of them and exhausts a reverse one; a key after them puts a
	// reverse iterator on the last and exhausts a forward one (store/kvtest
	// checks this).
	Seek(key []byte)
	// Rewind moves to the first key of the prefix (the last if Reverse).
	Rewind()
	// Valid reports whether the iterator is at a key of its prefix.
	Valid() bool
	// Key is the current key; it is valid only until the next move.
	Key() []byte
	// Value returns a copy of the current key's value, which belongs to
	// the caller.
	Value() ([]byte, error)
	// Next moves to the next key.
	Next()
	// Err reports an I/O error that ended the iteration early (Valid is
	// then false); nil when it simply ran out of keys.
	Err() error
	// Close releases the iterator.
	Close()
}
