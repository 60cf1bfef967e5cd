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
	// ErrPrevFailed: a write transaction that followed another
	// (Overlapper) cannot commit because the one before it failed to; it
	// has been discarded, and the caller builds it again from scratch.
	ErrPrevFailed = errors.New("store: the transaction before this one failed to commit")
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

// Overlapper is an optional interface of the write transactions
// (KV.Begin(ctx, true)) of a backend that can build the next write
// transaction while this one's commit is being made durable: the next
// transaction's reads and writes then run alongside the commit's write
// and fsync instead of after them. store/badger implements it; memory and
// PostgreSQL do not, and a Shared store must not (its writers read
// counters in each serialized transaction, across processes). Callers
// type-assert a Txn and fall back to Commit. KV's guarantees hold as
// before: write transactions commit one at a time in the order they were
// begun, and a reader's snapshot holds a prefix of them.
//
// The ordering rules, which the backend enforces:
//
//   - The next transaction is opened before this commit is issued, so its
//     snapshot lacks this transaction's writes; it reads them through an
//     Overlay (overlay.go): its own writes, then this transaction's, then
//     its snapshot. It commits after this one, and its writes win.
//   - done runs exactly once, on any goroutine (this one included), when
//     CommitOverlapped returned a nil error: with nil once the writes are
//     durable and visible to every transaction begun from then on (a
//     transaction begun before that waits for it, as with Commit), or
//     with the commit's error, after which nothing of this transaction is
//     visible that a failed Commit would not leave.
//   - The next transaction's Commit (or CommitOverlapped) waits for this
//     commit's outcome first. If this commit failed, it discards the next
//     transaction and returns ErrPrevFailed: nothing built on writes that
//     never landed can commit. At most one commit is in flight, and at
//     most one transaction follows it.
//   - The next transaction holds the writer token: no other write
//     transaction begins until it ends.
//   - It returns ErrUnsupported, having committed nothing, when it cannot
//     overlap this transaction (for store/badger: values stored in chunks,
//     another writer waiting for the store, or the store's first call,
//     after which its transactions keep their writes for a follower); the
//     caller then calls Commit. A caller that means to overlap may call it
//     once on an empty transaction, then discard it, to prepare the store.
type Overlapper interface {
	// CommitOverlapped issues the transaction's commit without waiting for
	// it to be durable, and returns the write transaction that follows
	// it (see the rules above). The transaction has ended when it returns
	// nil; on an error other than ErrUnsupported too.
	CommitOverlapped(done func(error)) (next Txn, err error)
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
