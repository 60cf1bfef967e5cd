package store

import (
	"bytes"
	"slices"
	"sort"
	"time"
	"unsafe"
)

// Overlapped commits (see Overlapper in kv.go).
//
// A write transaction that follows another whose commit is still in
// flight was opened before that commit was issued, so its snapshot lacks
// the other's writes. It reads them through an Overlay: the writes of the
// transaction before, kept as they were made. For each key a read takes,
// newest first:
//
//  1. the transaction's own writes (own: it wrote the key), which its
//     snapshot reader already sees;
//  2. the writes of the transaction before it (under), a set or a
//     delete;
//  3. its snapshot.
//
// Overlay.Get and Overlay.Iterate implement that order once for every
// backend that overlaps commits, over the backend's own reads (which hold
// 1 and 3).

// Overlay is the writes of one write transaction (sets with their expiry,
// and deletes), kept as they are made so that the transaction after it
// can read them before they are committed. Keys and values are copied in:
// the caller may reuse its buffers. An Overlay is written by one goroutine
// and, once another transaction reads through it, no longer written (the
// transaction it records has ended its writes). The zero value is not
// usable: see NewOverlay. A nil *Overlay holds no writes.
type Overlay struct {
	idx     map[string]int32 // key → entries index
	entries []overlayEntry
	arena   []byte // current block that keys and values are copied into
	// sorted is entries' indexes in key order, built by the first
	// Iterate (the overlay is no longer written by then).
	sorted []int32
	now    func() time.Time // expiry clock (time.Now); tests may set it
}

type overlayEntry struct {
	key, value []byte
	exp        int64 // Unix seconds at and after which the key reads as absent; 0: never
	deleted    bool
}

// NewOverlay returns an empty overlay, with room for about n writes.
func NewOverlay(n int) *Overlay {
	return &Overlay{idx: make(map[string]int32, n), entries: make([]overlayEntry, 0, n), now: time.Now}
}

// overlayBlock is the size of the blocks keys and values are copied into;
// a bigger value gets a block of its own.
const overlayBlock = 64 << 10

// copyIn returns a copy of b in the overlay's arena.
func (o *Overlay) copyIn(b []byte) []byte {
	if len(b) == 0 {
		return []byte{}
	}
	if len(b) > overlayBlock/4 {
		return bytes.Clone(b)
	}
	if cap(o.arena)-len(o.arena) < len(b) {
		o.arena = make([]byte, 0, overlayBlock)
	}
	n := len(o.arena)
	o.arena = append(o.arena, b...)
	return o.arena[n:len(o.arena):len(o.arena)]
}

func (o *Overlay) put(key, value []byte, exp int64, deleted bool) {
	if o.sorted != nil {
		panic("store: write to an overlay another transaction reads through")
	}
	if i, ok := o.idx[string(key)]; ok {
		e := &o.entries[i]
		e.value, e.exp, e.deleted = nil, exp, deleted
		if !deleted {
			e.value = o.copyIn(value)
		}
		return
	}
	k := o.copyIn(key)
	e := overlayEntry{key: k, exp: exp, deleted: deleted}
	if !deleted {
		e.value = o.copyIn(value)
	}
	o.entries = append(o.entries, e)
	// The arena never changes bytes once written: the map key may share
	// them.
	o.idx[unsafe.String(unsafe.SliceData(k), len(k))] = int32(len(o.entries) - 1)
}

// Set records a set of key to value, expiring after ttl (0: never), with
// Badger's expiry resolution (whole Unix seconds).
func (o *Overlay) Set(key, value []byte, ttl time.Duration) {
	var exp int64
	if ttl > 0 {
		exp = o.now().Add(ttl).Unix()
	}
	o.put(key, value, exp, false)
}

// Delete records a delete of key.
func (o *Overlay) Delete(key []byte) { o.put(key, nil, 0, true) }

// Has reports whether the overlay holds a write (set or delete) of key.
func (o *Overlay) Has(key []byte) bool {
	if o == nil {
		return false
	}
	_, ok := o.idx[string(key)]
	return ok
}

// Len is the number of keys written.
func (o *Overlay) Len() int {
	if o == nil {
		return 0
	}
	return len(o.entries)
}

// gone reports whether e reads as absent at Unix second now.
func (e *overlayEntry) gone(now int64) bool {
	return e.deleted || e.exp != 0 && e.exp <= now
}

// Get reads key in a transaction whose own writes are own and which
// follows the transaction o records: own's write (through base), else
// o's, else the snapshot's (base). base reads the transaction itself (its
// snapshot and its own writes) and returns ErrNotFound for an absent key.
// The returned slice belongs to the caller.
func (o *Overlay) Get(own *Overlay, key []byte, base func([]byte) ([]byte, error)) ([]byte, error) {
	if o != nil && !own.Has(key) {
		if i, ok := o.idx[string(key)]; ok {
			e := &o.entries[i]
			if e.gone(o.now().Unix()) {
				return nil, ErrNotFound
			}
			return bytes.Clone(e.value), nil
		}
	}
	return base(key)
}

// Iterate returns an iterator over opts' range in a transaction whose own
// writes are own and which follows the transaction o records: base's
// keys (the transaction's snapshot and own writes, opened with opts)
// merged with o's, o's write winning for a key own did not write. It
// closes base when closed. With a nil or empty o it returns base itself.
func (o *Overlay) Iterate(own *Overlay, base Iterator, opts IterOptions) Iterator {
	if o.Len() == 0 {
		return base
	}
	if o.sorted == nil {
		o.sorted = make([]int32, len(o.entries))
		for i := range o.sorted {
			o.sorted[i] = int32(i)
		}
		slices.SortFunc(o.sorted, func(a, b int32) int { return bytes.Compare(o.entries[a].key, o.entries[b].key) })
	}
	// o's keys in the prefix: sorted[lo:hi].
	lo := sort.Search(len(o.sorted), func(i int) bool { return bytes.Compare(o.entries[o.sorted[i]].key, opts.Prefix) >= 0 })
	hi := lo
	for hi < len(o.sorted) && bytes.HasPrefix(o.entries[o.sorted[hi]].key, opts.Prefix) {
		hi++
	}
	return &overlayIter{base: base, o: o, own: own, keys: o.sorted[lo:hi], reverse: opts.Reverse, now: o.now().Unix(), i: -1}
}

// overlayIter merges a transaction's iterator (base) with the writes of
// the transaction before it (keys, o's entries in the range, sorted). i
// is the position in keys (ascending index forward, descending reverse;
// out of [0, len) when spent); at says which side the current key is
// from.
type overlayIter struct {
	base    Iterator
	o       *Overlay
	own     *Overlay
	keys    []int32
	i       int
	reverse bool
	now     int64
	at      overlayAt
}

type overlayAt uint8

const (
	atNone  overlayAt = iota // not positioned, or spent
	atBase                   // base's key (o has no write of it, or own wrote it)
	atUnder                  // o's key, which base does not hold
	atBoth                   // o's key, which base holds too (from the snapshot): o's value
)

func (it *overlayIter) underOK() bool { return it.i >= 0 && it.i < len(it.keys) }

func (it *overlayIter) under() *overlayEntry { return &it.o.entries[it.keys[it.i]] }

func (it *overlayIter) step() {
	if it.reverse {
		it.i--
	} else {
		it.i++
	}
}

// settle finds the current key from the two sides' positions.
func (it *overlayIter) settle() {
	for {
		for it.underOK() && it.own.Has(it.under().key) {
			it.step() // own's write, which base shows (or hides, if a delete)
		}
		bv := it.base.Valid()
		if !it.underOK() {
			if bv {
				it.at = atBase
			} else {
				it.at = atNone
			}
			return
		}
		u := it.under()
		c := -1 // base's key against u's, in the iteration's order
		if bv {
			c = bytes.Compare(it.base.Key(), u.key)
			if it.reverse {
				c = -c
			}
		}
		switch {
		case bv && c < 0:
			it.at = atBase
			return
		case bv && c == 0:
			if u.gone(it.now) {
				it.step()
				it.base.Next()
				continue
			}
			it.at = atBoth
			return
		}
		if u.gone(it.now) {
			it.step()
			continue
		}
		it.at = atUnder
		return
	}
}

func (it *overlayIter) Seek(key []byte) {
	it.base.Seek(key)
	n := len(it.keys)
	if it.reverse {
		// The last key at or before key.
		it.i = sort.Search(n, func(i int) bool { return bytes.Compare(it.o.entries[it.keys[i]].key, key) > 0 }) - 1
	} else {
		it.i = sort.Search(n, func(i int) bool { return bytes.Compare(it.o.entries[it.keys[i]].key, key) >= 0 })
	}
	it.settle()
}

func (it *overlayIter) Rewind() {
	it.base.Rewind()
	if it.reverse {
		it.i = len(it.keys) - 1
	} else {
		it.i = 0
	}
	it.settle()
}

func (it *overlayIter) Valid() bool { return it.at != atNone && it.base.Err() == nil }

func (it *overlayIter) Key() []byte {
	if it.at == atBase {
		return it.base.Key()
	}
	return it.under().key
}

func (it *overlayIter) Value() ([]byte, error) {
	if it.at == atBase {
		return it.base.Value()
	}
	return bytes.Clone(it.under().value), nil
}

func (it *overlayIter) Next() {
	switch it.at {
	case atNone:
		return
	case atBase:
		it.base.Next()
	case atUnder:
		it.step()
	case atBoth:
		it.base.Next()
		it.step()
	}
	it.settle()
}

func (it *overlayIter) Err() error { return it.base.Err() }

func (it *overlayIter) Close() { it.base.Close() }
