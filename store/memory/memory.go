package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"time"

	"github.com/tidwall/btree"

	"github.com/doorstep-health/doorstep/store"
)

// ErrClosed is returned by every call on a closed store.
var ErrClosed = errors.New("store/memory: closed")

// Options configure New.
type Options struct {
	// Now is the clock TTLs are measured by; nil means time.Now.
	Now func() time.Time
	// MaxTxnBytes caps the key and value bytes one write transaction may
	// write (0: no cap); past it Set returns store.ErrTxnTooBig.
	MaxTxnBytes int
}

type item struct {
	key string
	val []byte
	exp int64 // Unix ns after which the key reads as absent; 0: never
}

func less(a, b item) bool { return a.key < b.key }

// Store is an in-memory store.KV. It is safe for concurrent use.
type Store struct {
	opts Options
	w    chan struct{} // the writer token: held by the one open write transaction

	mu     gosync.Mutex // guards base and closed
	base   *btree.BTreeG[item]
	closed bool
}

var _ store.KV = (*Store)(nil)

// New returns an empty store.
func New(opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{opts: opts, w: make(chan struct{}, 1)}
	s.base = btree.NewBTreeGOptions(less, btree.Options{NoLocks: true})
	return s
}

// snapshot returns a copy-on-write copy of the committed tree.
func (s *Store) snapshot() (*btree.BTreeG[item], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.base.Copy(), nil
}

// View implements store.KV.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	t, err := s.Begin(ctx, false)
	if err != nil {
		return err
	}
	defer t.Discard()
	return fn(t)
}

// Update implements store.KV.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	t, err := s.Begin(ctx, true)
	if err != nil {
		return err
	}
	defer t.Discard()
	if err := fn(t); err != nil {
		return err
	}
	return t.Commit()
}

// Begin implements store.KV. A write transaction waits for the one before
// it to end.
func (s *Store) Begin(ctx context.Context, update bool) (store.Txn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if update {
		select {
		case s.w <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	tree, err := s.snapshot()
	if err != nil {
		if update {
			<-s.w
		}
		return nil, err
	}
	return &tx{s: s, tree: tree, update: update, now: s.opts.Now().UnixNano()}, nil
}

// DropPrefix implements store.KV: it waits for the writer token, so it
// never runs inside a write transaction.
func (s *Store) DropPrefix(ctx context.Context, prefixes ...[]byte) error {
	t, err := s.Begin(ctx, true)
	if err != nil {
		return err
	}
	defer t.Discard()
	mt := t.(*tx)
	for _, p := range prefixes {
		var keys []string
		mt.tree.Ascend(item{key: string(p)}, func(it item) bool {
			if len(it.key) < len(p) || it.key[:len(p)] != string(p) {
				return false
			}
			keys = append(keys, it.key)
			return true
		})
		for _, k := range keys {
			mt.tree.Delete(item{key: k})
		}
	}
	return t.Commit()
}

// Shared implements store.KV: the store lives in one process.
func (s *Store) Shared() bool { return false }

// Close implements store.KV; later calls return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// tx is one transaction: a private copy of the tree, published on Commit.
type tx struct {
	s      *Store
	tree   *btree.BTreeG[item]
	update bool
	now    int64
	bytes  int
	done   bool
}

func (t *tx) live(it item) bool { return it.exp == 0 || it.exp > t.now }

func (t *tx) Get(key []byte) ([]byte, error) {
	if t.done {
		return nil, errors.New("store/memory: transaction ended")
	}
	it, ok := t.tree.Get(item{key: string(key)})
	if !ok || !t.live(it) {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(it.val), nil
}

func (t *tx) put(key, value []byte, exp int64) error {
	switch {
	case t.done:
		return errors.New("store/memory: transaction ended")
	case !t.update:
		return store.ErrReadOnly
	}
	t.bytes += len(key) + len(value)
	if t.s.opts.MaxTxnBytes > 0 && t.bytes > t.s.opts.MaxTxnBytes {
		return fmt.Errorf("%w: over %d bytes", store.ErrTxnTooBig, t.s.opts.MaxTxnBytes)
	}
	t.tree.Set(item{key: string(key), val: bytes.Clone(value), exp: exp})
	return nil
}

func (t *tx) Set(key, value []byte) error { return t.put(key, value, 0) }

func (t *tx) SetWithTTL(key, value []byte, ttl time.Duration) error {
	return t.put(key, value, t.s.opts.Now().Add(ttl).UnixNano())
}

func (t *tx) Delete(key []byte) error {
	switch {
	case t.done:
		return errors.New("store/memory: transaction ended")
	case !t.update:
		return store.ErrReadOnly
	}
	t.bytes += len(key)
	if t.s.opts.MaxTxnBytes > 0 && t.bytes > t.s.opts.MaxTxnBytes {
		return fmt.Errorf("%w: over %d bytes", store.ErrTxnTooBig, t.s.opts.MaxTxnBytes)
	}
	t.tree.Delete(item{key: string(key)})
	return nil
}

func (t *tx) Commit() error {
	if t.done {
		return errors.New("store/memory: transaction ended")
	}
	t.done = true
	if !t.update {
		return nil
	}
	defer func() { <-t.s.w }()
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if t.s.closed {
		return ErrClosed
	}
	t.s.base = t.tree
	return nil
}

func (t *tx) Discard() {
	if t.done {
		return
	}
	t.done = true
	if t.update {
		<-t.s.w
	}
}

// Iterate implements store.Tx over a copy of the transaction's tree taken
// now, so writes the caller makes while iterating do not disturb it (and
// are not seen by it).
func (t *tx) Iterate(opts store.IterOptions) store.Iterator {
	tree := t.tree
	if t.update {
		tree = t.tree.Copy()
	}
	return &iter{t: t, it: tree.Iter(), prefix: string(opts.Prefix), reverse: opts.Reverse}
}

type iter struct {
	t       *tx
	it      btree.IterG[item]
	prefix  string
	reverse bool
	ok      bool
	closed  bool
}

// settle skips expired keys in the iteration's direction and sets ok.
func (i *iter) settle(ok bool) {
	for ok && !i.t.live(i.it.Item()) {
		ok = i.step()
	}
	i.ok = ok && len(i.it.Item().key) >= len(i.prefix) && i.it.Item().key[:len(i.prefix)] == i.prefix
}

func (i *iter) step() bool {
	if i.reverse {
		return i.it.Prev()
	}
	return i.it.Next()
}

func (i *iter) Seek(key []byte) {
	if i.closed {
		return
	}
	k := string(key)
	if !i.reverse {
		if k < i.prefix {
			k = i.prefix
		}
		i.settle(i.it.Seek(item{key: k}))
		return
	}
	// At or before k; past the prefix's range, its last key. (A prefix
	// of 0xFF bytes has no key past its range: every key greater than
	// the prefix starts with it.)
	if up := successor(i.prefix); i.prefix != "" && up != "" && k >= up {
		i.Rewind()
		return
	}
	if i.it.Seek(item{key: k}) {
		if i.it.Item().key == k {
			i.settle(true)
			return
		}
		i.settle(i.it.Prev())
		return
	}
	i.settle(i.it.Last())
}

func (i *iter) Rewind() {
	if i.closed {
		return
	}
	if !i.reverse {
		i.Seek([]byte(i.prefix))
		return
	}
	up := successor(i.prefix)
	if up == "" {
		i.settle(i.it.Last())
		return
	}
	if i.it.Seek(item{key: up}) {
		i.settle(i.it.Prev())
		return
	}
	i.settle(i.it.Last())
}

// successor returns the smallest key after every key starting with p, or
// "" if there is none.
func successor(p string) string {
	b := []byte(p)
	for n := len(b) - 1; n >= 0; n-- {
		if b[n] < 0xff {
			b[n]++
			return string(b[:n+1])
		}
	}
	return ""
}

func (i *iter) Valid() bool { return !i.closed && i.ok }

func (i *iter) Key() []byte { return []byte(i.it.Item().key) }

func (i *iter) Value() ([]byte, error) { return bytes.Clone(i.it.Item().val), nil }

func (i *iter) Next() {
	if i.closed || !i.ok {
		return
	}
	i.settle(i.step())
}

func (i *iter) Err() error { return nil }

func (i *iter) Close() {
	if !i.closed {
		i.closed = true
		i.it.Release()
	}
}
