package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/crdt"
)

// LayoutVersion is the version of the local store layout this package
// writes, kept under m/layout. Version 1 (no m/layout key) stored record
// states in crdt state encoding version 1 (per-field removed-ID lists);
// version 2 stores crdt state encoding version 2 (a causal context per
// record). Open migrates an older store in place before anything else
// reads it.
const LayoutVersion uint32 = 2

// ErrNewerLayout reports a local store written by a newer SDK.
var ErrNewerLayout = errors.New("client: local store written by a newer SDK")

var keyLayout = []byte("m/layout")

// migrateBatch bounds the records rewritten per transaction.
const migrateBatch = 500

// migrateLayout brings the store to LayoutVersion. A new store (no replica
// ID yet) is stamped; a version 1 store has every record state rewritten
// in the version 2 encoding, in transactions of migrateBatch records, and
// is stamped last, so a migration cut short by a crash resumes (version 1
// and 2 states both decode) and no state is ever half written.
func (r *Replica) migrateLayout() error {
	var v uint32
	var fresh bool
	err := r.db.View(func(txn *badger.Txn) error {
		b, err := get(txn, keyLayout)
		if err != nil {
			return err
		}
		if b != nil {
			if len(b) != 4 {
				return fmt.Errorf("client: stored layout version is %d bytes", len(b))
			}
			v = binary.BigEndian.Uint32(b)
			return nil
		}
		id, err := get(txn, keyReplica)
		fresh, v = id == nil, 1
		return err
	})
	if err != nil {
		return fmt.Errorf("client: read layout version: %w", err)
	}
	switch {
	case v == LayoutVersion:
		return nil
	case v > LayoutVersion:
		return fmt.Errorf("%w: layout %d, this SDK reads up to %d", ErrNewerLayout, v, LayoutVersion)
	}
	if !fresh {
		r.log.Info("migrating local store", "from", v, "to", LayoutVersion)
		var after []byte
		for {
			n, last, err := r.rewriteRecords(after)
			if err != nil {
				return fmt.Errorf("client: migrate local store to layout %d: %w", LayoutVersion, err)
			}
			if n < migrateBatch {
				break
			}
			after = last
		}
	}
	return r.db.Update(func(txn *badger.Txn) error {
		return txn.Set(keyLayout, binary.BigEndian.AppendUint32(nil, LayoutVersion))
	})
}

// rewriteRecords re-encodes up to migrateBatch record states after key
// after (nil: from the first) and returns how many it read and the last
// key.
func (r *Replica) rewriteRecords(after []byte) (int, []byte, error) {
	n := 0
	var last []byte
	err := r.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefRecord, PrefetchValues: true})
		seek := prefRecord
		if after != nil {
			seek = append(append([]byte{}, after...), 0)
		}
		type kv struct{ k, v []byte }
		var out []kv
		for it.Seek(seek); it.ValidForPrefix(prefRecord) && n < migrateBatch; it.Next() {
			k := it.Item().KeyCopy(nil)
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			n++
			last = k
			rec, err := crdt.UnmarshalRecord(v)
			if err != nil {
				it.Close()
				return fmt.Errorf("record %q: %w", k, err)
			}
			b, err := crdt.MarshalRecord(rec)
			if err != nil {
				it.Close()
				return err
			}
			if !bytes.Equal(b, v) {
				out = append(out, kv{k, b})
			}
		}
		it.Close()
		for _, x := range out {
			if err := txn.Set(x.k, x.v); err != nil {
				return err
			}
		}
		return nil
	})
	return n, last, err
}
