package layout

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// ErrNewer reports a store written by a newer build than this one.
var ErrNewer = errors.New("layout: store written by a newer version")

// Migration upgrades a store from one layout version to the next inside
// one transaction.
type Migration func(txn *badger.Txn) error

// Spec describes one store's layout versions.
type Spec struct {
	// Key holds the version, a big-endian uint32.
	Key []byte
	// Current is the version this build writes.
	Current uint32
	// Migrations[v] upgrades version v to v+1. Version 0 is a store
	// written before it had a version key: one with keys but no Key.
	Migrations map[uint32]Migration
}

// Migrate brings db to s.Current. A store with no keys at all is new and
// is stamped with s.Current; one with keys but no version key is at
// version 0. It returns the version found before migrating.
func Migrate(db *badger.DB, s Spec) (uint32, error) {
	from, err := read(db, s.Key)
	if err != nil {
		return 0, err
	}
	v := from
	for {
		switch {
		case v == s.Current:
			return from, nil
		case v == newStore:
			err := db.Update(func(txn *badger.Txn) error { return txn.Set(s.Key, bytesOf(s.Current)) })
			if err != nil {
				return 0, fmt.Errorf("layout: stamp version: %w", err)
			}
			return s.Current, nil
		case v > s.Current:
			return 0, fmt.Errorf("%w: layout %d, this build reads up to %d", ErrNewer, v, s.Current)
		}
		m, ok := s.Migrations[v]
		if !ok {
			return 0, fmt.Errorf("layout: no migration from layout %d", v)
		}
		err := db.Update(func(txn *badger.Txn) error {
			if err := m(txn); err != nil {
				return err
			}
			return txn.Set(s.Key, bytesOf(v+1))
		})
		if err != nil {
			return 0, fmt.Errorf("layout: migrate %d to %d: %w", v, v+1, err)
		}
		v++
	}
}

// newStore stands for "no keys at all" in read's result.
const newStore = ^uint32(0)

// read returns the stored version, 0 for a store with keys but no version,
// or newStore for an empty store.
func read(db *badger.DB, key []byte) (uint32, error) {
	v := newStore
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			if it.Rewind(); it.Valid() {
				v = 0
			}
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) != 4 {
				return fmt.Errorf("layout: version is %d bytes, want 4", len(b))
			}
			v = binary.BigEndian.Uint32(b)
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("layout: read version: %w", err)
	}
	return v, nil
}

func bytesOf(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
