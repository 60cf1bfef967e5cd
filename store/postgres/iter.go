package postgres

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/doorstep-health/doorstep/store"
)

// Batch sizes of an iterator's fetches: the first is the caller's hint (or
// defaultBatch), each next one doubles, up to maxBatch.
const (
	defaultBatch = 128
	maxBatch     = 2048
)

// Iterate returns an iterator over opts.Prefix that reads the table in
// batches by keyset paging (key > last, ORDER BY key LIMIT n; descending
// for Reverse), each batch in one round trip on the transaction's
// snapshot. The transaction's buffered writes are sent before each fetch,
// so its own writes made before Iterate are seen.
func (t *tx) Iterate(opts store.IterOptions) store.Iterator {
	lo, hi := prefixRange(opts.Prefix)
	it := &iter{t: t, opts: opts, lo: lo, hi: hi, first: opts.Batch}
	if it.first <= 0 {
		it.first = defaultBatch
	}
	if it.first > maxBatch {
		it.first = maxBatch
	}
	return it
}

type iter struct {
	t      *tx
	opts   store.IterOptions
	lo, hi []byte // the prefix's range [lo, hi); hi nil: unbounded
	first  int

	keys, vals [][]byte // the current batch
	exps       []int64  // expiry of each (Unix seconds, rounded up; 0: none); nil for KeysOnly
	pos        int
	more       bool // the table may hold keys past the batch
	next       int  // size of the next fetch
	err        error
	closed     bool
}

// Rewind moves to the first key of the prefix (the last if Reverse).
func (it *iter) Rewind() {
	if it.opts.Reverse {
		it.fetch(nil, false, it.first)
	} else {
		it.fetch(it.lo, true, it.first)
	}
}

// Seek moves to the first key at or after key (at or before it if Reverse)
// within the prefix.
func (it *iter) Seek(key []byte) {
	if it.opts.Reverse {
		if it.hi != nil && bytes.Compare(key, it.hi) >= 0 {
			it.fetch(nil, false, it.first) // past the prefix: its last key
			return
		}
		it.fetch(key, true, it.first)
		return
	}
	if bytes.Compare(key, it.lo) < 0 {
		key = it.lo
	}
	it.fetch(key, true, it.first)
}

// fetch loads a batch of n entries starting from bound (nil: the range's
// end; inclusive or exclusive), in the iterator's direction.
func (it *iter) fetch(bound []byte, inclusive bool, n int) {
	it.keys, it.vals, it.exps, it.pos, it.more = nil, nil, nil, 0, false
	if it.closed || it.err != nil {
		return
	}
	if it.t.done {
		it.err = errEnded
		return
	}
	if err := it.t.flush(); err != nil {
		it.err = err
		return
	}
	if err := it.t.ensureBegun(); err != nil {
		it.err = err
		return
	}
	var sb strings.Builder
	args := make([]any, 0, 3)
	arg := func(v []byte) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	sb.WriteString("SELECT key")
	if !it.opts.KeysOnly {
		sb.WriteString(", value, COALESCE(ceil(extract(epoch FROM expires_at))::int8, 0)")
	}
	sb.WriteString(" FROM ")
	sb.WriteString(it.t.kv.table)
	sb.WriteString(" WHERE " + live)
	if len(it.lo) > 0 {
		sb.WriteString(" AND key >= " + arg(it.lo))
	}
	if it.hi != nil {
		sb.WriteString(" AND key < " + arg(it.hi))
	}
	if bound != nil {
		op := map[[2]bool]string{{false, false}: ">", {false, true}: ">=", {true, false}: "<", {true, true}: "<="}[[2]bool{it.opts.Reverse, inclusive}]
		sb.WriteString(" AND key " + op + " " + arg(bound))
	}
	if it.opts.Reverse {
		sb.WriteString(" ORDER BY key DESC")
	} else {
		sb.WriteString(" ORDER BY key")
	}
	fmt.Fprintf(&sb, " LIMIT %d", n)
	it.t.kv.stats.fetches.Add(1)
	rows, err := it.t.conn.Query(it.t.ctx, sb.String(), args...)
	if err != nil {
		it.err = fmt.Errorf("store/postgres: iterate: %w", mapErr(err))
		return
	}
	for rows.Next() {
		var k, v []byte
		var exp int64
		if it.opts.KeysOnly {
			err = rows.Scan(&k)
		} else {
			err = rows.Scan(&k, &v, &exp)
		}
		if err != nil {
			rows.Close()
			it.err = fmt.Errorf("store/postgres: iterate: %w", err)
			return
		}
		it.keys = append(it.keys, k)
		it.vals = append(it.vals, v)
		it.exps = append(it.exps, exp)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		it.keys, it.vals, it.exps = nil, nil, nil
		it.err = fmt.Errorf("store/postgres: iterate: %w", mapErr(err))
		return
	}
	it.more = len(it.keys) == n
	it.next = min(2*n, maxBatch)
}

// Valid reports whether the iterator is at a key.
func (it *iter) Valid() bool { return it.err == nil && it.pos < len(it.keys) }

// Key is the current key.
func (it *iter) Key() []byte { return it.keys[it.pos] }

// Value returns a copy of the current value (fetched now for KeysOnly).
func (it *iter) Value() ([]byte, error) {
	if it.opts.KeysOnly {
		return it.t.Get(it.keys[it.pos])
	}
	v := it.vals[it.pos]
	if v == nil {
		return []byte{}, nil
	}
	return append([]byte{}, v...), nil
}

// ExpiresAt is when the current key expires (SetWithTTL), in Unix seconds
// rounded up, as Badger reports it; 0 when it never does. A backup
// (backup.EachIter) carries it over. With KeysOnly it reads as 0.
func (it *iter) ExpiresAt() uint64 {
	if it.exps == nil {
		return 0
	}
	return uint64(it.exps[it.pos])
}

// Next moves to the next key, fetching the next batch past the last key
// of this one when it runs out.
func (it *iter) Next() {
	it.pos++
	if it.pos < len(it.keys) || !it.more {
		return
	}
	last := it.keys[len(it.keys)-1]
	it.fetch(last, false, it.next)
}

// Err reports the error that ended the iteration, if any.
func (it *iter) Err() error { return it.err }

// Close releases the batch.
func (it *iter) Close() {
	it.closed = true
	it.keys, it.vals, it.exps = nil, nil, nil
}
