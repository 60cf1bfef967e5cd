package client

import (
	"bytes"
	"encoding/binary"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/crdt"
)

// Layout 2 stores record states in crdt state encoding 2 (a causal context
// per record) where layouts 0 and 1 stored encoding 1 (per-field
// removed-ID lists). The rewrite runs before the version bookkeeping
// (layout.Migrate, whose migrations run in one transaction each), in
// transactions of migrateBatch records, so a large replica migrates
// within Badger's transaction limits; both encodings decode, so a rewrite
// cut short by a crash reads correctly and resumes on the next Open, and
// the version moves to 2 only once it is done.

// migrateBatch bounds the records rewritten per transaction.
const migrateBatch = 500

// rewriteStatesForLayout2 re-encodes every record state of a replica whose
// layout is older than 2 (there is nothing to do for a new or current
// one).
func (r *Replica) rewriteStatesForLayout2() error {
	var older bool
	err := r.db.View(func(txn *badger.Txn) error {
		b, err := get(txn, keyLayout)
		if err != nil {
			return err
		}
		if b != nil {
			older = len(b) == 4 && binary.BigEndian.Uint32(b) < 2
			return nil
		}
		id, err := get(txn, keyReplica)
		older = id != nil
		return err
	})
	if err != nil || !older {
		return err
	}
	r.log.Info("rewriting record states for layout 2")
	var after []byte
	for {
		n, last, err := r.rewriteRecords(after)
		if err != nil {
			return fmt.Errorf("client: rewrite record states for layout 2: %w", err)
		}
		if n < migrateBatch {
			return nil
		}
		after = last
	}
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
