package sync

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/doorstep-health/doorstep/store"
)

// Purge markers read for many records at once. Admission reads a new
// record's purge marker (p/) before it lets ops create it; a device's
// push creates hundreds of records, each a point read in the committer
// that nearly always misses. Purge markers are few (one per erased
// record), so the markers of the records a commit group's pushes look
// like creating (readErasedRange) are read instead, as the transaction
// starts, in one walk of the p/
// range between the smallest and the largest of their keys: the walk
// tells, for every record key in the range, whether a marker is there.
// The answers are kept in the transaction (txnState.erased) until it
// writes a marker (an erasure in the group), and read one by one after.
// The walk runs first because an iterator over a write transaction also
// walks the writes it holds (Badger sorts them for each iterator).

// Tunables of the range read (variables so that tests can make every
// change take the range read).
var (
	// erasedRangeMin is the number of records a group's pushes look
	// like creating from which their markers are read by range.
	erasedRangeMin = 16
	// erasedRangeSteps bounds the markers one range read passes: where
	// the records' keys are spread among many markers, the rest are read
	// one by one.
	erasedRangeSteps = 64
)

// readErasedRange reads the purge markers of the records the pushes of
// reqs look like creating (see above) into t.erased, unless they are
// fewer than erasedRangeMin: the records of their runs merged ahead
// (mergeAhead), a new record's first change as a device writes it. The
// markers of other records are read one by one if admission asks (for a
// record with an owner it does not).
func (t *txnState) readErasedRange(reqs []*request) error {
	var keys [][]byte
	for _, r := range reqs {
		if r.kind != reqPush {
			continue
		}
		for _, runs := range r.ahead {
			for i := range runs {
				op := &runs[i].ops[0]
				keys = append(keys, store.ErasedKey(op.Collection, op.Record))
			}
		}
	}
	if len(keys) < erasedRangeMin {
		return nil
	}
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)
	if t.erased == nil {
		t.erased = make(map[string]string, len(keys))
	}
	it := t.txn.Iterate(store.IterOptions{Prefix: store.ErasedPrefix(), KeysOnly: true, Batch: 8})
	defer it.Close()
	it.Seek(keys[0])
	steps := 0
	for _, k := range keys {
		// Pass the markers before k; stop (the rest read one by one)
		// after erasedRangeSteps of them.
		for it.Valid() && bytes.Compare(it.Key(), k) < 0 {
			if steps++; steps > erasedRangeSteps {
				return it.Err()
			}
			it.Next()
		}
		team := ""
		if it.Valid() && bytes.Equal(it.Key(), k) {
			v, err := it.Value()
			if err != nil {
				return fmt.Errorf("read purge marker: %w", err)
			}
			team = string(v)
		}
		t.erased[string(k)] = team // no marker at k when the walk passed it
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read purge markers: %w", err)
	}
	return nil
}
