package store

import (
	"bytes"
	"fmt"
)

// prefixScrubHold is s/<key>: a copy of a log entry an erasure scrub is
// about to drop and write back (see sync's scrub). If the process dies
// between the drop and the write-back, RecoverScrub puts it back.
var prefixScrubHold = []byte("s/")

// ScrubHoldKey is s/<key>.
func ScrubHoldKey(k []byte) []byte { return append(cat(prefixScrubHold, len(k)), k...) }

// RecoverScrub writes back every held key and deletes its hold, in txn.
// Engines call it when they open the store.
func RecoverScrub(txn Tx) error {
	it := txn.Iterate(IterOptions{Prefix: prefixScrubHold})
	var keys, vals [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Value()
		if err != nil {
			it.Close()
			return fmt.Errorf("store: scrub hold: %w", err)
		}
		keys = append(keys, bytes.Clone(it.Key()))
		vals = append(vals, v)
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return fmt.Errorf("store: scrub hold: %w", err)
	}
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
