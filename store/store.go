package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	badger "github.com/dgraph-io/badger/v4"
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
}

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
	bo := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithLogger(badgerLogger{logger.With("component", "badger")})
	if opts.SmallMemory {
		bo = bo.WithMemTableSize(16 << 20).WithBlockCacheSize(16 << 20).WithIndexCacheSize(8 << 20).WithNumCompactors(2)
	}
	db, err := badger.Open(bo)
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
