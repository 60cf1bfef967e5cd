package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	dgbadger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/doorstep-health/doorstep/internal/badgeropen"
	"github.com/doorstep-health/doorstep/store"
)

// Options configure Open.
type Options struct {
	Dir    string       // Badger directory; created if missing
	Logger *slog.Logger // nil means slog.Default()
	// SmallMemory shrinks Badger's memtables and caches, for tests and
	// tools that open many stores.
	SmallMemory bool
	// EncryptionKey, if set, encrypts the store at rest with Badger's AES
	// encryption (16, 24 or 32 bytes: AES-128/192/256). Badger encrypts
	// tables and value log with data keys it keeps in its key registry,
	// itself encrypted with this master key; data keys rotate every
	// EncryptionKeyRotation. Opening an encrypted store needs the same key.
	EncryptionKey []byte
}

// EncryptionKeyRotation is how often Badger starts a new data key for new
// tables and value-log files in an encrypted store.
const EncryptionKeyRotation = 7 * 24 * time.Hour

// Badger memory bounds, set explicitly so that the server's memory stays
// flat as stored history grows (measured with `go run ./cmd/doorstep-load
// -mode grow`, see docs/benchmarks.md). Badger's own defaults leave
// IndexCacheSize at 0, which keeps every table's index and bloom filter in
// memory for as long as the table exists: memory then grows with history.
const (
	// MemTableSize is one memtable's arena. Writes land in the active
	// memtable; full ones wait for their flush to level 0.
	MemTableSize = 32 << 20
	// NumMemtables bounds the memtables held at once (active plus those
	// waiting to flush): at most NumMemtables×MemTableSize of arenas.
	NumMemtables = 3
	// BlockCacheSize bounds the cache of decompressed table blocks that
	// reads (pulls, record lookups in commits) go through.
	BlockCacheSize = 64 << 20
	// IndexCacheSize bounds the cache of table indexes and bloom filters.
	// Non-zero makes Badger load them on demand instead of keeping all of
	// them in memory.
	IndexCacheSize = 32 << 20
	// NumCompactors bounds concurrent compactions, each of which builds
	// tables in memory before writing them.
	NumCompactors = 2
	// TableSize is the size of every table compactions write below
	// level 0 (the table size multiplier is 1). Badger's defaults double
	// the table size per level, up to 64 MiB in the last level, and a
	// compaction holds up to 8+splits finished tables in memory while it
	// writes them.
	TableSize = 8 << 20
)

// Store is a store.KV over one Badger database.
type Store struct {
	db *dgbadger.DB
	// w is the writer token, held by the one open write transaction from
	// Begin(ctx, true) (or Update) to Commit or Discard: the seam promises
	// serialized writers, and Badger's conflict detection is off.
	w chan struct{}
	// waiting counts the callers waiting for the writer token (or about
	// to take it): a write transaction does not overlap its commit with a
	// next one (CommitOverlapped) while another writer waits, so a
	// pipeline of overlapped commits never keeps the token from it for
	// more than the transaction being built.
	waiting atomic.Int32
	// overlapping is set by the first CommitOverlapped: from then on the
	// write transactions from Begin keep their writes (tx.own) for a
	// transaction that may follow them; before, none pays for it.
	// ownHint is how many the last one kept, to size the next one's.
	overlapping atomic.Bool
	ownHint     atomic.Int64
	// chunk is the chunk size of big values (ChunkSize, or less under a
	// smaller value threshold): values of chunk bytes or more are stored
	// in chunks (see chunk.go).
	chunk int
	// chunked maps each key stored in chunks to its chunks' generation
	// and count, so that a write over it or its deletion removes them
	// without a read (big values are rare: the map is small). Built by
	// New from the chunk range; read and changed only under the writer
	// token (write transactions, DropPrefix), as is gen, the last chunk
	// generation used.
	chunked map[string]chunkRef
	gen     uint64
	// fail is the FailCommits hook (nil: none).
	fail atomic.Pointer[func() error]
}

// FailCommits installs a fault for tests of what callers do when a commit
// fails: before each write transaction from Begin commits (Commit or
// CommitOverlapped), fail is called, and an error from it fails that
// commit instead of sending it to Badger, as a failed write does: none of
// its writes are applied, and the error is returned by Commit or passed
// to CommitOverlapped's callback (on another goroutine, the next
// transaction having been opened). nil removes the fault.
func (s *Store) FailCommits(fail func() error) {
	if fail == nil {
		s.fail.Store(nil)
		return
	}
	s.fail.Store(&fail)
}

// Waiting is how many callers are waiting for the writer token (or about
// to take it), for tests and diagnostics.
func (s *Store) Waiting() int { return int(s.waiting.Load()) }

// injected returns the FailCommits fault for the commit being issued.
func (s *Store) injected() error {
	if f := s.fail.Load(); f != nil {
		return (*f)()
	}
	return nil
}

var _ store.KV = (*Store)(nil)

// Open opens (creating if needed) the Badger database in opts.Dir with
// durable writes. It does not check or migrate Doorstep's layout: that is
// store.Migrate, which the engine runs on whatever KV it is given.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store/badger: no directory")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store/badger: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	db, err := badgeropen.Open(BadgerOptions(opts, logger), logger)
	if err != nil {
		return nil, fmt.Errorf("store/badger: open %s: %w", opts.Dir, err)
	}
	s, err := New(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// New wraps an open Badger database (opened with BadgerOptions or
// equivalent durability settings); Close closes it. It reads the chunk
// range (see chunk.go) to learn which keys hold big values, and deletes
// the chunks a crash left without a head.
func New(db *dgbadger.DB) (*Store, error) {
	s := &Store{db: db, w: make(chan struct{}, 1), chunk: ChunkSize, chunked: map[string]chunkRef{}}
	if th := int(db.Opts().ValueThreshold); th-1 < s.chunk {
		s.chunk = max(th-1, 1)
	}
	if err := s.loadChunks(); err != nil {
		return nil, fmt.Errorf("store/badger: read chunk range: %w", err)
	}
	return s, nil
}

// lock takes the writer token, or gives up when ctx is done.
func (s *Store) lock(ctx context.Context) error {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case s.w <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) unlock() { <-s.w }

// BadgerOptions returns the Badger options Open uses for opts (the
// durability, memory and encryption settings), for tools such as restore
// that load a store's directory with Badger directly.
func BadgerOptions(opts Options, logger *slog.Logger) dgbadger.Options {
	if logger == nil {
		logger = slog.Default()
	}
	// Tables are not compressed (options.None). With compression on, a
	// table builder measures its size by the compressed bytes, which its
	// compressor goroutines report late when CPU is short: on 2 busy cores
	// builders overshot their size many times over and Badger's live heap
	// reached 2 GiB at 5M ops. Uncompressed, the live heap stayed at
	// 330–600 MiB (see docs/benchmarks.md). Our values are small msgpack
	// documents; the cost is disk, not memory.
	bo := dgbadger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithLogger(badgerLogger{logger.With("component", "badger")}).
		WithMemTableSize(MemTableSize).
		WithNumMemtables(NumMemtables).
		WithBlockCacheSize(BlockCacheSize).
		WithIndexCacheSize(IndexCacheSize).
		WithNumCompactors(NumCompactors).
		WithCompression(options.None)
	bo.BaseTableSize = TableSize
	bo.TableSizeMultiplier = 1 // no With method in badger v4
	if opts.SmallMemory {
		bo = bo.WithMemTableSize(16 << 20).WithBlockCacheSize(16 << 20).WithIndexCacheSize(8 << 20).WithNumCompactors(2)
	}
	if len(opts.EncryptionKey) > 0 {
		// Badger requires an index cache with encryption; IndexCacheSize
		// is set above.
		bo = bo.WithEncryptionKey(opts.EncryptionKey).WithEncryptionKeyRotationDuration(EncryptionKeyRotation)
	}
	return bo
}

// DB returns the Badger database, for Badger-only tools (backup load
// targets, raw ingest). Callers write only keys laid out by package store,
// and big values (ChunkSize and over) only in the form EncodeValue gives:
// a big value written raw still reads, but lives in Badger's value log,
// out of DropPrefix's reach.
func (s *Store) DB() *dgbadger.DB { return s.db }

// Size is Badger's estimate of the store's bytes on disk (LSM and value
// log).
func (s *Store) Size() int64 {
	lsm, vlog := s.db.Size()
	return lsm + vlog
}

// Sizes is Badger's estimate of its LSM and value-log bytes on disk
// (refreshed by Badger about once a minute).
func (s *Store) Sizes() (lsm, vlog int64) { return s.db.Size() }

// View implements store.KV.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return mapErr(s.db.View(func(txn *dgbadger.Txn) error { return fn(&tx{txn: txn, kv: s}) }))
}

// Update implements store.KV; it waits for the open write transaction,
// if any, to end.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	t := &tx{txn: nil, kv: s, write: true}
	err := s.db.Update(func(txn *dgbadger.Txn) error { t.txn = txn; return fn(t) })
	if err == nil {
		t.applyChunked()
	} else {
		t.unstage()
	}
	return mapErr(err)
}

// Begin implements store.KV. A write transaction waits for the one open
// before it to end.
func (s *Store) Begin(ctx context.Context, update bool) (store.Txn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !update {
		return &tx{txn: s.db.NewTransaction(false), kv: s}, nil
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	return &tx{txn: s.db.NewTransaction(true), kv: s, token: true, write: true, own: s.newOwn()}, nil
}

// newOwn returns the overlay a write transaction from Begin keeps its
// writes in, for a transaction that may follow it (CommitOverlapped);
// nil before the store's first CommitOverlapped.
func (s *Store) newOwn() *store.Overlay {
	if !s.overlapping.Load() {
		return nil
	}
	return store.NewOverlay(int(s.ownHint.Load()) * 9 / 8)
}

// DropPrefix implements store.KV with Badger's DropPrefix (holding the
// writer token, so no write transaction runs meanwhile), which flushes
// the memtables without the keys and compacts every table holding them.
// It also drops the chunks of big values under the prefixes (see
// chunk.go), whose every generation lives in the tables too: no value
// this package writes is in Badger's value log, so nothing of the dropped
// keys stays on disk.
//
// Value-log garbage collection follows for values written to the value
// log before chunk form 1 (a store from an older version, or raw writes
// through DB). It may not reach them: Badger never rewrites the
// value-log file being written (valueLog.pickLog takes only files below
// maxFid) and picks a file by its discard statistics, which a memtable
// flush that drops prefixes does not update. Such a store is cleaned by a
// backup and restore, which loads big values in chunks.
func (s *Store) DropPrefix(ctx context.Context, prefixes ...[]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	// Badger drops only the prefixes that still hold a live key, and the
	// chunks of a deleted big value are deleted too: a sentinel under
	// each chunk prefix (dropSentinel, never a chunk key, never read)
	// makes Badger drop every version of those chunks all the same.
	all := make([][]byte, 0, 2*len(prefixes))
	err := s.db.Update(func(txn *dgbadger.Txn) error {
		for _, p := range prefixes {
			cp := dropPrefixFor(p)
			all = append(all, p, cp)
			if err := txn.Set(dropSentinel(cp), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store/badger: drop prefix: %w", mapErr(err))
	}
	if err := s.db.DropPrefix(all...); err != nil {
		return fmt.Errorf("store/badger: drop prefix: %w", err)
	}
	for k := range s.chunked {
		for _, p := range prefixes {
			if bytes.HasPrefix([]byte(k), p) {
				delete(s.chunked, k)
				break
			}
		}
	}
	for s.db.RunValueLogGC(0.01) == nil {
	}
	return nil
}

// Shared implements store.KV: a Badger directory belongs to one process.
func (s *Store) Shared() bool { return false }

// Close flushes and closes Badger.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store/badger: close: %w", err)
	}
	return nil
}

// mapErr maps Badger's sentinel errors to the seam's, keeping Badger's
// text.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrTxnTooBig),
		errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrReadOnly):
		return err
	case errors.Is(err, dgbadger.ErrKeyNotFound):
		return store.ErrNotFound
	case errors.Is(err, dgbadger.ErrTxnTooBig):
		return fmt.Errorf("%w: %v", store.ErrTxnTooBig, err)
	case errors.Is(err, dgbadger.ErrConflict):
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	case errors.Is(err, dgbadger.ErrReadOnlyTxn):
		return fmt.Errorf("%w: %v", store.ErrReadOnly, err)
	}
	return err
}

// tx is a store.Txn over a Badger transaction. token is set on a write
// transaction from Begin, which holds the writer token until it ends.
// over holds the chunk references (see Store.chunked) this write
// transaction changed, the zero chunkRef for a key no longer in chunks;
// they apply on commit. staged holds the big values whose chunks this
// transaction wrote ahead of it (see chunk.go), by generation.
//
// A write transaction from Begin keeps its writes in own as well, so that
// the transaction following it (CommitOverlapped) can read them; that
// follower has under (the writes of the transaction before it, whose
// commit may still be in flight) and prev, that commit's outcome.
type tx struct {
	txn    *dgbadger.Txn
	kv     *Store
	write  bool // a write transaction (holding the writer token)
	token  bool
	done   bool
	over   map[string]chunkRef
	staged map[uint64]stagedValue
	own    *store.Overlay
	under  *store.Overlay
	prev   *inFlight
}

// inFlight is the outcome of a commit issued by CommitOverlapped: done is
// closed once err is set.
type inFlight struct {
	done chan struct{}
	err  error
}

// end releases the writer token of a Begin write transaction, once.
func (t *tx) end() {
	if t.token && !t.done {
		t.done = true
		t.kv.unlock()
	}
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if t.under != nil {
		return t.under.Get(t.own, key, t.get)
	}
	return t.get(key)
}

// get reads key in the Badger transaction (its snapshot and own writes).
func (t *tx) get(key []byte) ([]byte, error) {
	item, err := t.txn.Get(key)
	if err != nil {
		return nil, mapErr(err)
	}
	return t.value(item)
}

func (t *tx) Set(key, value []byte) error { return t.SetWithTTL(key, value, 0) }

func (t *tx) SetWithTTL(key, value []byte, ttl time.Duration) error {
	if err := t.put(key, value, ttl); err != nil {
		return err
	}
	if t.own != nil {
		t.own.Set(key, value, ttl)
	}
	return nil
}

func (t *tx) Delete(key []byte) error {
	if err := t.dropChunks(key); err != nil {
		return err
	}
	if err := t.txn.Delete(key); err != nil {
		return mapErr(err)
	}
	if t.own != nil {
		t.own.Delete(key)
	}
	return nil
}

// waitPrev waits for the outcome of the commit this transaction follows,
// if any; when that commit failed it discards this one and returns
// store.ErrPrevFailed.
func (t *tx) waitPrev() error {
	if t.prev == nil {
		return nil
	}
	<-t.prev.done
	if err := t.prev.err; err != nil {
		t.Discard()
		return fmt.Errorf("%w: %v", store.ErrPrevFailed, err)
	}
	t.prev = nil
	return nil
}

func (t *tx) Commit() error {
	if err := t.waitPrev(); err != nil {
		return err
	}
	defer t.end()
	if t.own != nil {
		t.kv.ownHint.Store(int64(t.own.Len()))
	}
	if t.token {
		if err := t.kv.injected(); err != nil {
			t.txn.Discard()
			t.unstage()
			return err
		}
	}
	err := t.txn.Commit()
	if err == nil {
		t.applyChunked()
	} else {
		t.unstage()
	}
	return mapErr(err)
}

func (t *tx) Discard() {
	t.txn.Discard()
	t.unstage()
	t.end()
}

var _ store.Overlapper = (*tx)(nil)

// CommitOverlapped implements store.Overlapper. The next transaction is a
// Badger transaction opened before this one's commit is issued (Badger
// gives a new transaction the snapshot of every commit that has a
// timestamp, and waits for those to be written: opened after the commit
// it would wait for the fsync). Conflict detection is off, so it commits
// after this one, at a higher timestamp, whatever both wrote; it reads
// this one's writes through own, as its under. Badger's CommitWith sends
// commits to its write channel in timestamp order and runs the callback
// once the write (fsynced, SyncWrites) is done.
//
// A transaction that wrote or replaced a value in chunks does not
// overlap (chunk references apply to the store at commit, and a follower
// would read the old ones), nor one whose store has a writer waiting for
// the token, nor one begun before the store's first CommitOverlapped
// (transactions keep their writes for a follower only from then on, so
// that a store never overlapped pays nothing for it).
func (t *tx) CommitOverlapped(done func(error)) (store.Txn, error) {
	switch {
	case !t.token || t.done:
		return nil, errors.New("store/badger: CommitOverlapped on a transaction not begun for writing, or ended")
	case t.own == nil:
		// Begun before the store's first CommitOverlapped, it kept no
		// writes: transactions keep them from now on.
		t.kv.overlapping.Store(true)
		return nil, store.ErrUnsupported
	case len(t.over) > 0 || len(t.staged) > 0 || t.kv.waiting.Load() > 0:
		return nil, store.ErrUnsupported
	}
	t.kv.ownHint.Store(int64(t.own.Len()))
	if err := t.waitPrev(); err != nil {
		return nil, err
	}
	next := &tx{txn: t.kv.db.NewTransaction(true), kv: t.kv, token: true, write: true, own: t.kv.newOwn(), under: t.own}
	f := &inFlight{done: make(chan struct{})}
	next.prev = f
	t.done = true // the writer token passes to next
	if err := t.kv.injected(); err != nil {
		t.txn.Discard()
		go func() {
			f.err = err
			done(err)
			close(f.done)
		}()
		return next, nil
	}
	t.txn.CommitWith(func(err error) {
		f.err = mapErr(err)
		done(f.err)
		close(f.done)
	})
	return next, nil
}

func (t *tx) Iterate(opts store.IterOptions) store.Iterator {
	bo := dgbadger.IteratorOptions{
		Prefix:         opts.Prefix,
		Reverse:        opts.Reverse,
		PrefetchValues: !opts.KeysOnly,
		PrefetchSize:   100,
	}
	if opts.Batch > 0 {
		bo.PrefetchSize = min(opts.Batch, 100)
	}
	if opts.Reverse {
		// Badger's iterator never yields a key outside its Prefix, and a
		// reverse Rewind must seek from just past the prefix's range (see
		// Rewind): the prefix is checked by Valid instead, and Badger
		// picks tables by the whole key range.
		bo.Prefix = nil
	}
	// Only an iterator whose prefix does not rule out the chunk range
	// (nil, or a prefix of chunkPrefix) can meet chunk keys: it skips them.
	skip := bytes.HasPrefix(chunkPrefix, opts.Prefix)
	it := &iter{t: t, it: t.txn.NewIterator(bo), prefix: opts.Prefix, reverse: opts.Reverse, skip: skip}
	if t.under != nil {
		return t.under.Iterate(t.own, it, opts)
	}
	return it
}

// iter is a store.Iterator over a Badger iterator. skip is set when the
// iterator's range holds the chunk range, which it then steps over.
type iter struct {
	t       *tx
	it      *dgbadger.Iterator
	prefix  []byte
	reverse bool
	skip    bool
	err     error
	// spent: a reverse Seek to the empty key, before every key, left the
	// iterator past its end (Badger's own would rewind).
	spent bool
}

// skipChunks moves off the chunk range, forward past its end, reversed
// to the last key before it.
func (i *iter) skipChunks() {
	if !i.skip || !i.it.Valid() || !bytes.HasPrefix(i.it.Item().Key(), chunkPrefix) {
		return
	}
	if i.reverse {
		i.it.Seek(chunkPrefix) // the largest key at or before it: none is a chunk key
		return
	}
	i.it.Seek(successor(chunkPrefix))
}

func (i *iter) Seek(key []byte) {
	i.spent = false
	switch {
	case i.reverse && len(key) == 0:
		i.spent = true
		return
	case !i.reverse && bytes.Compare(key, i.prefix) < 0:
		key = i.prefix
	case i.reverse && len(i.prefix) > 0 && !bytes.HasPrefix(key, i.prefix) && bytes.Compare(key, i.prefix) > 0:
		// Past the prefix's range: its last key.
		i.Rewind()
		return
	}
	i.it.Seek(key)
	i.skipChunks()
}

// Rewind moves to the first key of the prefix, or, reversed, to its last:
// Badger's own Rewind in reverse seeks to the prefix itself, which sorts
// before every key it starts, so it would land before the prefix.
func (i *iter) Rewind() {
	i.spent = false
	defer i.skipChunks()
	if !i.reverse || len(i.prefix) == 0 {
		i.it.Rewind()
		return
	}
	upper := successor(i.prefix)
	if upper == nil {
		// A prefix of 0xFF bytes: its range ends the key space.
		i.it.Rewind()
		return
	}
	i.it.Seek(upper)
	if i.it.Valid() && bytes.Equal(i.it.Item().Key(), upper) {
		i.it.Next()
	}
}

// successor returns the smallest key greater than every key starting with
// p, or nil if there is none.
func successor(p []byte) []byte {
	s := bytes.Clone(p)
	for n := len(s) - 1; n >= 0; n-- {
		if s[n] < 0xff {
			s[n]++
			return s[:n+1]
		}
	}
	return nil
}

func (i *iter) Valid() bool { return !i.spent && i.err == nil && i.it.ValidForPrefix(i.prefix) }

func (i *iter) Key() []byte { return i.it.Item().Key() }

func (i *iter) Value() ([]byte, error) {
	v, err := i.t.value(i.it.Item())
	if err != nil {
		i.err = mapErr(err)
		return nil, i.err
	}
	return v, nil
}

// ExpiresAt is the current key's expiry (Unix seconds, 0: none), for
// backups of a Badger store (see backup.EachIter).
func (i *iter) ExpiresAt() uint64 { return i.it.Item().ExpiresAt() }

// UserMeta is the current key's Badger user meta byte, for backups; 0 for
// a value stored in chunks, which Value returns whole.
func (i *iter) UserMeta() byte {
	if m := i.it.Item().UserMeta(); m != metaChunked {
		return m
	}
	return 0
}

func (i *iter) Next() {
	if !i.spent && i.it.Valid() {
		i.it.Next()
		i.skipChunks()
	}
}

func (i *iter) Err() error { return i.err }

func (i *iter) Close() { i.it.Close() }

// badgerLogger routes Badger's logs to slog; Badger's info chatter goes to
// debug level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(fmt.Sprintf(f, a...)) }
