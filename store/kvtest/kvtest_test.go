package kvtest_test

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/kvtest"
)

// The suite passes on refKV, a deliberately naive reference store (a map
// copied for every snapshot, one mutex for writers), so a failure on a
// real backend is the backend's.
func TestReference(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) (store.KV, kvtest.Reopen) {
		data := &refData{m: map[string]refEntry{}}
		return &refKV{d: data}, func() (store.KV, error) { return &refKV{d: data}, nil }
	})
}

type refEntry struct {
	v   []byte
	exp time.Time
}

type refData struct {
	mu     sync.Mutex // guards m
	writer sync.Mutex // held by the one write transaction
	m      map[string]refEntry
}

type refKV struct{ d *refData }

func (k *refKV) View(ctx context.Context, fn func(store.Tx) error) error {
	t, _ := k.Begin(ctx, false)
	defer t.Discard()
	return fn(t)
}

func (k *refKV) Update(ctx context.Context, fn func(store.Tx) error) error {
	t, _ := k.Begin(ctx, true)
	defer t.Discard()
	if err := fn(t); err != nil {
		return err
	}
	return t.Commit()
}

func (k *refKV) Begin(_ context.Context, update bool) (store.Txn, error) {
	if update {
		k.d.writer.Lock()
	}
	k.d.mu.Lock()
	snap := make(map[string]refEntry, len(k.d.m))
	for key, e := range k.d.m {
		snap[key] = e
	}
	k.d.mu.Unlock()
	return &refTxn{d: k.d, update: update, snap: snap}, nil
}

func (k *refKV) DropPrefix(_ context.Context, prefixes ...[]byte) error {
	k.d.writer.Lock()
	defer k.d.writer.Unlock()
	k.d.mu.Lock()
	defer k.d.mu.Unlock()
	for key := range k.d.m {
		for _, p := range prefixes {
			if strings.HasPrefix(key, string(p)) {
				delete(k.d.m, key)
			}
		}
	}
	return nil
}

func (k *refKV) Shared() bool { return false }
func (k *refKV) Close() error { return nil }

type refTxn struct {
	d      *refData
	update bool
	done   bool
	snap   map[string]refEntry // the snapshot with own writes applied
	writes map[string]*refEntry
}

func (t *refTxn) live(key string) (refEntry, bool) {
	e, ok := t.snap[key]
	if !ok || (!e.exp.IsZero() && !time.Now().Before(e.exp)) {
		return refEntry{}, false
	}
	return e, true
}

func (t *refTxn) Get(key []byte) ([]byte, error) {
	e, ok := t.live(string(key))
	if !ok {
		return nil, store.ErrNotFound
	}
	return append([]byte{}, e.v...), nil
}

func (t *refTxn) put(key string, e *refEntry) error {
	if !t.update {
		return store.ErrReadOnly
	}
	if t.writes == nil {
		t.writes = map[string]*refEntry{}
	}
	t.writes[key] = e
	if e == nil {
		delete(t.snap, key)
	} else {
		t.snap[key] = *e
	}
	return nil
}

func (t *refTxn) Set(key, value []byte) error {
	return t.put(string(key), &refEntry{v: append([]byte{}, value...)})
}

func (t *refTxn) SetWithTTL(key, value []byte, ttl time.Duration) error {
	return t.put(string(key), &refEntry{v: append([]byte{}, value...), exp: time.Now().Add(ttl)})
}

func (t *refTxn) Delete(key []byte) error { return t.put(string(key), nil) }

func (t *refTxn) Iterate(opts store.IterOptions) store.Iterator {
	var ks []string
	for key := range t.snap {
		if _, ok := t.live(key); ok && strings.HasPrefix(key, string(opts.Prefix)) {
			ks = append(ks, key)
		}
	}
	sort.Strings(ks)
	if opts.Reverse {
		for i, j := 0, len(ks)-1; i < j; i, j = i+1, j-1 {
			ks[i], ks[j] = ks[j], ks[i]
		}
	}
	vals := make(map[string][]byte, len(ks))
	for _, key := range ks {
		vals[key] = t.snap[key].v
	}
	return &refIter{keys: ks, vals: vals, reverse: opts.Reverse, pos: len(ks)}
}

func (t *refTxn) Commit() error {
	if t.done {
		return nil
	}
	t.done = true
	if t.update {
		defer t.d.writer.Unlock()
		t.d.mu.Lock()
		for key, e := range t.writes {
			if e == nil {
				delete(t.d.m, key)
			} else {
				t.d.m[key] = *e
			}
		}
		t.d.mu.Unlock()
	}
	return nil
}

func (t *refTxn) Discard() {
	if t.done {
		return
	}
	t.done = true
	if t.update {
		t.d.writer.Unlock()
	}
}

type refIter struct {
	keys    []string
	vals    map[string][]byte
	reverse bool
	pos     int
}

func (it *refIter) Seek(key []byte) {
	k := string(key)
	it.pos = sort.Search(len(it.keys), func(i int) bool {
		if it.reverse {
			return it.keys[i] <= k
		}
		return it.keys[i] >= k
	})
}
func (it *refIter) Rewind()     { it.pos = 0 }
func (it *refIter) Valid() bool { return it.pos < len(it.keys) }
func (it *refIter) Key() []byte { return []byte(it.keys[it.pos]) }
func (it *refIter) Next()       { it.pos++ }
func (it *refIter) Err() error  { return nil }
func (it *refIter) Close()      {}
func (it *refIter) Value() ([]byte, error) {
	return append([]byte{}, it.vals[it.keys[it.pos]]...), nil
}
