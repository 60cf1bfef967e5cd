package auth

// This file is a stopgap until store/badger lands on main: it opens the
// auth store's Badger directory and wraps it as a store.KV. Once
// store/badger is there, server and cmd open the store themselves and pass
// it to New, and this file goes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/doorstep-health/doorstep/internal/badgeropen"
	"github.com/doorstep-health/doorstep/store"
)

// Open opens (creating if needed) the auth store's Badger directory dir,
// encrypted with cfg.EncryptionKey if set, and returns New over it. KeyDir
// defaults to "keys" next to dir.
func Open(ctx context.Context, dir string, cfg Config) (*Service, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.KeyDir == "" {
		cfg.KeyDir = filepath.Join(filepath.Dir(filepath.Clean(dir)), "keys")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	db, err := badgeropen.Open(BadgerOptions(dir, cfg.EncryptionKey), logger)
	if err != nil {
		return nil, fmt.Errorf("open auth store %s: %w", dir, err)
	}
	return New(ctx, &badgerKV{db: db}, cfg)
}

// badgerKV is a store.KV over one Badger database.
type badgerKV struct{ db *badger.DB }

func (k *badgerKV) View(ctx context.Context, fn func(store.Tx) error) error {
	return badgerErr(k.db.View(func(txn *badger.Txn) error { return fn(badgerTx{txn}) }))
}

func (k *badgerKV) Update(ctx context.Context, fn func(store.Tx) error) error {
	return badgerErr(k.db.Update(func(txn *badger.Txn) error { return fn(badgerTx{txn}) }))
}

func (k *badgerKV) Begin(ctx context.Context, update bool) (store.Txn, error) {
	return badgerTx{k.db.NewTransaction(update)}, nil
}

func (k *badgerKV) DropPrefix(ctx context.Context, prefixes ...[]byte) error {
	return k.db.DropPrefix(prefixes...)
}

func (k *badgerKV) Shared() bool { return false }

func (k *badgerKV) Close() error { return k.db.Close() }

func badgerErr(err error) error {
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return store.ErrNotFound
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %v", store.ErrTxnTooBig, err)
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	}
	return err
}

type badgerTx struct{ txn *badger.Txn }

func (t badgerTx) Get(key []byte) ([]byte, error) {
	item, err := t.txn.Get(key)
	if err != nil {
		return nil, badgerErr(err)
	}
	v, err := item.ValueCopy(nil)
	return v, badgerErr(err)
}

func (t badgerTx) Set(key, value []byte) error { return badgerErr(t.txn.Set(key, value)) }

func (t badgerTx) SetWithTTL(key, value []byte, ttl time.Duration) error {
	return badgerErr(t.txn.SetEntry(badger.NewEntry(key, value).WithTTL(ttl)))
}

func (t badgerTx) Delete(key []byte) error { return badgerErr(t.txn.Delete(key)) }
func (t badgerTx) Commit() error           { return badgerErr(t.txn.Commit()) }
func (t badgerTx) Discard()                { t.txn.Discard() }

func (t badgerTx) Iterate(opts store.IterOptions) store.Iterator {
	bo := badger.IteratorOptions{Prefix: opts.Prefix, Reverse: opts.Reverse, PrefetchValues: !opts.KeysOnly, PrefetchSize: 100}
	if opts.Batch > 0 {
		bo.PrefetchSize = min(opts.Batch, 100)
	}
	return &badgerIter{it: t.txn.NewIterator(bo), prefix: opts.Prefix, reverse: opts.Reverse}
}

type badgerIter struct {
	it      *badger.Iterator
	prefix  []byte
	reverse bool
	err     error
}

func (i *badgerIter) Seek(key []byte) { i.it.Seek(key) }

func (i *badgerIter) Rewind() {
	if !i.reverse || len(i.prefix) == 0 {
		i.it.Rewind()
		return
	}
	// Badger's reverse Rewind lands before the prefix: seek past every
	// key of the prefix instead (auth keys are short).
	i.it.Seek(append(bytes.Clone(i.prefix), bytes.Repeat([]byte{0xff}, 1024)...))
}

func (i *badgerIter) Valid() bool { return i.err == nil && i.it.ValidForPrefix(i.prefix) }
func (i *badgerIter) Key() []byte { return i.it.Item().Key() }

func (i *badgerIter) Value() ([]byte, error) {
	v, err := i.it.Item().ValueCopy(nil)
	if err != nil {
		i.err = badgerErr(err)
	}
	return v, i.err
}

func (i *badgerIter) Next()      { i.it.Next() }
func (i *badgerIter) Err() error { return i.err }
func (i *badgerIter) Close()     { i.it.Close() }
