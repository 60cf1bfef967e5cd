package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/doorstep-health/doorstep/internal/badgeropen"
)

// CurrentVersion is the version of the key layout this package writes.
const CurrentVersion uint32 = 1

// ErrNewerVersion reports a store written by a newer Doorstep.
var ErrNewerVersion = errors.New("store: written by a newer version")

// Migration upgrades a store from one layout version to the next inside
// one write transaction.
type Migration func(txn *badger.Txn) error

// migrations[v] upgrades a store at version v to v+1. Version 1 is the
// first layout, so there are none yet; a layout change adds one here and
// bumps CurrentVersion.
var migrations = map[uint32]Migration{}

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

// Store is an open Badger database with Doorstep's layout.
type Store struct {
	db *badger.DB
}

// Open opens (creating if needed) the store in opts.Dir with durable
// writes, checks its layout version and runs any migrations.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: no directory")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	bo := BadgerOptions(opts, logger)
	db, err := badgeropen.Open(bo, logger)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", opts.Dir, err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx, logger); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// BadgerOptions returns the Badger options Open uses for opts (the
// durability, memory and encryption settings), for tools such as restore
// that load a store's directory with Badger directly.
func BadgerOptions(opts Options, logger *slog.Logger) badger.Options {
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
	bo := badger.DefaultOptions(opts.Dir).
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

// migrate stamps a new store with CurrentVersion, or upgrades an older one
// step by step, each step in its own transaction.
func (s *Store) migrate(ctx context.Context, logger *slog.Logger) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var v uint32
		var found bool
		err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(KeyVersion)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			} else if err != nil {
				return err
			}
			return item.Value(func(b []byte) error {
				if len(b) != 4 {
					return fmt.Errorf("%w: version", ErrBadValue)
				}
				v, found = uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]), true
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("store: read version: %w", err)
		}
		switch {
		case !found:
			return s.db.Update(func(txn *badger.Txn) error { return txn.Set(KeyVersion, versionBytes(CurrentVersion)) })
		case v == CurrentVersion:
			return nil
		case v > CurrentVersion:
			return fmt.Errorf("%w: layout %d, this build reads up to %d", ErrNewerVersion, v, CurrentVersion)
		}
		m, ok := migrations[v]
		if !ok {
			return fmt.Errorf("store: no migration from layout %d", v)
		}
		logger.Info("migrating store", "from", v, "to", v+1)
		if err := s.db.Update(func(txn *badger.Txn) error {
			if err := m(txn); err != nil {
				return err
			}
			return txn.Set(KeyVersion, versionBytes(v+1))
		}); err != nil {
			return fmt.Errorf("store: migrate %d to %d: %w", v, v+1, err)
		}
	}
}

func versionBytes(v uint32) []byte {
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// DB returns the Badger database. Callers write only through transactions
// and only keys laid out by this package.
func (s *Store) DB() *badger.DB { return s.db }

// Close flushes and closes Badger.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// GetU64Key reads a u64 value, returning 0 when the key is absent.
func GetU64Key(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		v, err = GetU64(b)
		return err
	})
	return v, err
}

// badgerLogger routes Badger's logs to slog; Badger's info chatter goes to
// debug level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(fmt.Sprintf(f, a...)) }
