package store

import (
	"bytes"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// prefixScrubHold is s/<key>: a copy of a log entry an erasure scrub is
// about to drop and write back (see sync's scrub). If the process dies
// between the drop and the write-back, RecoverScrub puts it back.
var prefixScrubHold = []byte("s/")

// ScrubHoldKey is s/<key>.
func ScrubHoldKey(k []byte) []byte { return append(cat(prefixScrubHold, len(k)), k...) }

// RecoverScrub writes back every held key and deletes its hold, in txn.
// Engines call it when they open the store.
func RecoverScrub(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixScrubHold, PrefetchValues: true})
	var keys, vals [][]byte
	for it.Rewind(); it.ValidForPrefix(prefixScrubHold); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			it.Close()
			return fmt.Errorf("store: scrub hold: %w", err)
		}
		keys = append(keys, it.Item().KeyCopy(nil))
		vals = append(vals, v)
	}
	it.Close()
	for i, k := range keys {
		if err := txn.Set(bytes.Clone(k[len(prefixScrubHold):]), vals[i]); err != nil {
			return err
		}
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
