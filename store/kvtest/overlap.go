package kvtest

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/store"
)

// Overlapped commits (store.Overlay, store.Overlapper), checked against a
// model: a map of what the store must read as, with the KV's ordering
// rules for iteration written out once here (modelScan).

// overlapKeys is the key universe of the overlap tests: every string of
// one to three bytes over a, b and 0xFF, so that prefixes nest, end in
// 0xFF and hold none or many keys.
func overlapKeys() []string {
	alpha := []string{"a", "b", "\xff"}
	var out []string
	var grow func(p string)
	grow = func(p string) {
		for _, c := range alpha {
			k := p + c
			out = append(out, k)
			if len(k) < 3 {
				grow(k)
			}
		}
	}
	grow("")
	slices.Sort(out)
	return out
}

// overlapPrefixes are the prefixes iterated: none, nested ones, ones ending
// in 0xFF, one holding a single key and one holding none.
var overlapPrefixes = []string{"", "a", "ab", "aba", "b", "b\xff", "\xff", "\xff\xff", "c"}

// overlapSeeks are seek targets beyond the universe: before, between and
// after its keys.
var overlapSeeks = []string{"", "\x00", "a\x00", "ab\xff\xff", "c", "\xff\xff\xff\xff"}

// write is one write of a scenario: a set of key to val, or a delete.
type write struct {
	key, val string
	del      bool
}

// randomWrites returns n random writes over keys (about a third deletes),
// values tagged with tag so that every layer's are told apart.
func randomWrites(rnd *rand.Rand, keys []string, n int, tag string) []write {
	out := make([]write, n)
	for i := range out {
		k := keys[rnd.Intn(len(keys))]
		out[i] = write{key: k, val: fmt.Sprintf("%s%d", tag, i), del: rnd.Intn(3) == 0}
		if rnd.Intn(8) == 0 {
			out[i].val = "" // empty values are values
		}
	}
	return out
}

func applyModel(m map[string]string, ws []write) {
	for _, w := range ws {
		if w.del {
			delete(m, w.key)
		} else {
			m[w.key] = w.val
		}
	}
}

func applyTx(tx store.Tx, ws []write) error {
	for _, w := range ws {
		var err error
		if w.del {
			err = tx.Delete([]byte(w.key))
		} else {
			err = tx.Set([]byte(w.key), []byte(w.val))
		}
		if err != nil {
			return fmt.Errorf("write %q: %w", w.key, err)
		}
	}
	return nil
}

// modelScan is what an iterator over m with prefix and reverse yields
// after Rewind (seek nil) or Seek(seek): the keys of the prefix at or
// after seek (at or before it, reversed), in order.
func modelScan(m map[string]string, prefix string, reverse bool, seek *string) []string {
	var out []string
	for k := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if seek != nil && (!reverse && k < *seek || reverse && k > *seek) {
			continue
		}
		out = append(out, k)
	}
	slices.Sort(out)
	if reverse {
		slices.Reverse(out)
	}
	return out
}

// checkModel checks the reads of tx against m: a Get of every key of the
// universe, and iterations over every prefix, both ways, from Rewind and
// from Seek, to the end (keys and values). With a nil rnd it seeks to
// every key and seek target, with and without KeysOnly; otherwise to a
// few picked by rnd, KeysOnly or not as rnd says (iterators are dear on
// some backends).
func checkModel(rnd *rand.Rand, tx store.Tx, m map[string]string, what string) error {
	keys := overlapKeys()
	for _, k := range keys {
		v, err := tx.Get([]byte(k))
		want, ok := m[k]
		switch {
		case !ok && !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("%s: Get %q = %q, %v; want not found", what, k, v, err)
		case ok && (err != nil || string(v) != want):
			return fmt.Errorf("%s: Get %q = %q, %v; want %q", what, k, v, err, want)
		}
	}
	seeks := append(slices.Clone(keys), overlapSeeks...)
	for _, p := range overlapPrefixes {
		for _, reverse := range []bool{false, true} {
			for _, keysOnly := range []bool{false, true} {
				if rnd != nil && rnd.Intn(2) == 0 {
					continue
				}
				opts := store.IterOptions{Prefix: []byte(p), Reverse: reverse, KeysOnly: keysOnly}
				if p == "" {
					opts.Prefix = nil
				}
				for i := -1; i < len(seeks); i++ {
					var seek *string
					if i >= 0 {
						if rnd != nil && rnd.Intn(len(seeks)) >= 3 {
							continue
						}
						seek = &seeks[i]
					}
					if err := checkScan(tx, m, opts, seek); err != nil {
						return fmt.Errorf("%s: prefix %q reverse=%v keysOnly=%v seek %q: %w", what, p, reverse, keysOnly, fmtSeek(seek), err)
					}
				}
			}
		}
	}
	return nil
}

func fmtSeek(s *string) string {
	if s == nil {
		return "(rewind)"
	}
	return *s
}

func checkScan(tx store.Tx, m map[string]string, opts store.IterOptions, seek *string) error {
	want := modelScan(m, string(opts.Prefix), opts.Reverse, seek)
	it := tx.Iterate(opts)
	defer it.Close()
	if seek == nil {
		it.Rewind()
	} else {
		it.Seek([]byte(*seek))
	}
	var got []string
	for ; it.Valid(); it.Next() {
		k := string(it.Key())
		got = append(got, k)
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("value of %q: %w", k, err)
		}
		if string(v) != m[k] {
			return fmt.Errorf("value of %q = %q, want %q", k, v, m[k])
		}
		if len(got) > len(want) {
			break
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	if !equal(got, want) {
		return fmt.Errorf("keys %q, want %q", got, want)
	}
	return nil
}

// followTx is a transaction following another through a store.Overlay, as
// a backend that overlaps commits reads: base is a plain transaction of
// the backend, whose snapshot lacks under's writes; own records base's
// writes as they are made.
type followTx struct {
	base       store.Tx
	own, under *store.Overlay
}

func (f *followTx) Get(key []byte) ([]byte, error) { return f.under.Get(f.own, key, f.base.Get) }

func (f *followTx) Set(key, value []byte) error { return f.SetWithTTL(key, value, 0) }

func (f *followTx) SetWithTTL(key, value []byte, ttl time.Duration) error {
	var err error
	if ttl > 0 {
		err = f.base.SetWithTTL(key, value, ttl)
	} else {
		err = f.base.Set(key, value)
	}
	if err == nil {
		f.own.Set(key, value, ttl)
	}
	return err
}

func (f *followTx) Delete(key []byte) error {
	err := f.base.Delete(key)
	if err == nil {
		f.own.Delete(key)
	}
	return err
}

func (f *followTx) Iterate(opts store.IterOptions) store.Iterator {
	return f.under.Iterate(f.own, f.base.Iterate(opts), opts)
}

// deleteWhileIterating deletes, through tx, about half of the keys an
// iteration over prefix visits, at the iterator, and rewrites some; m
// follows.
func deleteWhileIterating(rnd *rand.Rand, tx store.Tx, m map[string]string, prefix string, reverse bool) error {
	opts := store.IterOptions{Prefix: []byte(prefix), Reverse: reverse}
	if prefix == "" {
		opts.Prefix = nil
	}
	want := modelScan(m, prefix, reverse, nil)
	it := tx.Iterate(opts)
	defer it.Close()
	var got []string
	for it.Rewind(); it.Valid(); it.Next() {
		k := string(it.Key())
		got = append(got, k)
		switch rnd.Intn(3) {
		case 0:
			if err := tx.Delete([]byte(k)); err != nil {
				return err
			}
			delete(m, k)
		case 1:
			v := "rewritten " + k
			if err := tx.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
			m[k] = v
		}
	}
	if !equal(got, want) {
		return fmt.Errorf("deleting while iterating %q reverse=%v: keys %q, want %q", prefix, reverse, got, want)
	}
	return it.Err()
}

// RunOverlay checks store.Overlay's reads (Get and merged iteration) over
// open's backend's plain transactions against a model, on random
// scenarios: a committed snapshot, the writes of a transaction before
// (kept only in the overlay, as if its commit were in flight) and the
// transaction's own writes, then deletes and rewrites made while
// iterating. It needs no store.Overlapper.
func RunOverlay(t *testing.T, open Opener, seeds int) {
	kv, _ := fresh(t, open)
	keys := overlapKeys()
	for seed := 0; seed < seeds; seed++ {
		rnd := rand.New(rand.NewSource(int64(seed)))
		m := map[string]string{}
		// The snapshot: replace the store's keys with a random set.
		err := kv.Update(ctx(), func(tx store.Tx) error {
			for _, k := range keys {
				if err := tx.Delete([]byte(k)); err != nil {
					return err
				}
			}
			ws := randomWrites(rnd, keys, rnd.Intn(40), "s")
			applyModel(m, ws)
			return applyTx(tx, ws)
		})
		if err != nil {
			t.Fatal(err)
		}
		under := store.NewOverlay(0)
		w0 := randomWrites(rnd, keys, rnd.Intn(30), "u")
		for _, w := range w0 {
			if w.del {
				under.Delete([]byte(w.key))
			} else {
				under.Set([]byte(w.key), []byte(w.val), 0)
			}
		}
		applyModel(m, w0)
		txn, err := kv.Begin(ctx(), true)
		if err != nil {
			t.Fatal(err)
		}
		f := &followTx{base: txn, own: store.NewOverlay(0), under: under}
		if err := checkModel(rnd, f, m, fmt.Sprintf("seed %d, before own writes", seed)); err != nil {
			txn.Discard()
			t.Fatal(err)
		}
		w1 := randomWrites(rnd, keys, rnd.Intn(30), "o")
		if err := applyTx(f, w1); err != nil {
			txn.Discard()
			t.Fatal(err)
		}
		applyModel(m, w1)
		if err := checkModel(rnd, f, m, fmt.Sprintf("seed %d, after own writes", seed)); err != nil {
			txn.Discard()
			t.Fatal(err)
		}
		p := overlapPrefixes[rnd.Intn(len(overlapPrefixes))]
		if err := deleteWhileIterating(rnd, f, m, p, rnd.Intn(2) == 0); err != nil {
			txn.Discard()
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := checkModel(rnd, f, m, fmt.Sprintf("seed %d, after deleting while iterating", seed)); err != nil {
			txn.Discard()
			t.Fatal(err)
		}
		txn.Discard()
	}
}

// RunOverlapped checks a backend whose write transactions implement
// store.Overlapper: chains of transactions, each following the one before
// while its commit is in flight, read what the model says (before and
// after the commit ahead lands, while deleting and rewriting as they
// iterate), every commit's callback runs once with nil, a transaction
// begun after CommitOverlapped sees the writes, a follower discarded
// leaves the store to the next writer, and after reopening the store
// holds exactly the model (durable backends).
func RunOverlapped(t *testing.T, open Opener, seeds int) {
	kv, reopen := open(t)
	defer func() {
		if kv != nil {
			kv.Close()
		}
	}()
	keys := overlapKeys()
	// Prepare the store: a backend may decline its first CommitOverlapped
	// (see store.Overlapper).
	if txn, err := kv.Begin(ctx(), true); err != nil {
		t.Fatal(err)
	} else if next, err := txn.(store.Overlapper).CommitOverlapped(func(error) {}); err == nil {
		next.Discard()
	} else if !errors.Is(err, store.ErrUnsupported) {
		t.Fatal(err)
	} else {
		txn.Discard()
	}
	m := map[string]string{}
	var callbacks atomic.Int32
	issued := 0
	for seed := 0; seed < seeds; seed++ {
		rnd := rand.New(rand.NewSource(int64(1000 + seed)))
		txn, err := kv.Begin(ctx(), true)
		if err != nil {
			t.Fatal(err)
		}
		// A chain of 1–4 transactions, each built while the commit of the
		// one before is in flight.
		chain := 1 + rnd.Intn(4)
		for link := 0; link < chain; link++ {
			what := fmt.Sprintf("seed %d link %d", seed, link)
			if err := checkModel(rnd, txn, m, what+", before writes"); err != nil {
				txn.Discard()
				t.Fatal(err)
			}
			ws := randomWrites(rnd, keys, rnd.Intn(30), fmt.Sprintf("%d.%d.", seed, link))
			if err := applyTx(txn, ws); err != nil {
				txn.Discard()
				t.Fatal(err)
			}
			applyModel(m, ws)
			if rnd.Intn(3) == 0 {
				p := overlapPrefixes[rnd.Intn(len(overlapPrefixes))]
				if err := deleteWhileIterating(rnd, txn, m, p, rnd.Intn(2) == 0); err != nil {
					txn.Discard()
					t.Fatalf("%s: %v", what, err)
				}
			}
			if err := checkModel(rnd, txn, m, what+", after writes"); err != nil {
				txn.Discard()
				t.Fatal(err)
			}
			ov, ok := txn.(store.Overlapper)
			if !ok {
				t.Fatalf("%T does not implement store.Overlapper", txn)
			}
			if link == chain-1 {
				if err := txn.Commit(); err != nil {
					t.Fatalf("%s: Commit: %v", what, err)
				}
				break
			}
			once := new(atomic.Int32)
			next, err := ov.CommitOverlapped(func(err error) {
				if once.Add(1) != 1 {
					t.Errorf("%s: commit callback ran twice", what)
				}
				if err != nil {
					t.Errorf("%s: commit failed: %v", what, err)
				}
				callbacks.Add(1)
			})
			if err != nil {
				t.Fatalf("%s: CommitOverlapped: %v", what, err)
			}
			issued++
			txn = next
			if rnd.Intn(2) == 0 {
				// Let the commit ahead land first, sometimes.
				time.Sleep(time.Duration(rnd.Intn(3)) * time.Millisecond)
			}
		}
		// A transaction begun now (the chain has ended) sees every link.
		err = kv.View(ctx(), func(tx store.Tx) error { return checkModel(rnd, tx, m, fmt.Sprintf("seed %d, a later view", seed)) })
		if err != nil {
			t.Fatal(err)
		}
	}
	// A follower discarded while the commit ahead is in flight: the next
	// writer sees that commit.
	txn, err := kv.Begin(ctx(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("a"), []byte("before discard")); err != nil {
		t.Fatal(err)
	}
	m["a"] = "before discard"
	next, err := txn.(store.Overlapper).CommitOverlapped(func(err error) {
		if err != nil {
			t.Errorf("commit before a discarded follower: %v", err)
		}
		callbacks.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	issued++
	next.Discard()
	if err := kv.Update(ctx(), func(tx store.Tx) error { return checkModel(nil, tx, m, "after a discarded follower") }); err != nil {
		t.Fatal(err)
	}
	// The last callback may run just after its commit became visible.
	for deadline := time.Now().Add(10 * time.Second); int(callbacks.Load()) != issued && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := int(callbacks.Load()); got != issued {
		t.Fatalf("%d commit callbacks ran, want %d", got, issued)
	}
	if reopen == nil {
		return
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	kv = nil
	kv2, err := reopen()
	if err != nil {
		t.Fatal(err)
	}
	defer kv2.Close()
	if err := kv2.View(ctx(), func(tx store.Tx) error { return checkModel(nil, tx, m, "after reopening") }); err != nil {
		t.Fatal(err)
	}
}
