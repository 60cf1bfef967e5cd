package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/badger"
	"github.com/doorstep-health/doorstep/store/memory"
)

type backend struct {
	name string
	open func(t *testing.T) store.KV
}

func backends() []backend {
	return []backend{
		{"memory", func(*testing.T) store.KV { return memory.New(memory.Options{MaxTxnBytes: 4 << 20}) }},
		{"badger", func(t *testing.T) store.KV {
			kv, err := badger.Open(badger.Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true})
			if err != nil {
				t.Fatal(err)
			}
			return kv
		}},
	}
}

func keys(t *testing.T, tx store.Tx, opts store.IterOptions, seek []byte) []string {
	t.Helper()
	it := tx.Iterate(opts)
	defer it.Close()
	var out []string
	if seek == nil {
		it.Rewind()
	} else {
		it.Seek(seek)
	}
	for ; it.Valid(); it.Next() {
		out = append(out, string(it.Key()))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSeam checks the behaviours the engine relies on, over each backend:
// not found, rollback, prefix order both ways (a reverse Rewind lands on the
// prefix's last key, even one of 0xFF bytes), seeks, value copies,
// read-only refusal, snapshots, read-your-writes, the transaction size
// limit and DropPrefix.
func TestSeam(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			kv := b.open(t)
			defer kv.Close()
			if kv.Shared() {
				t.Fatal("an embedded backend reports Shared")
			}
			all := []string{"a", "a/", "a/x", "a/\xff\xff\xff\xff", "a0", "b", "\xff", "\xff\xff/z"}
			if err := kv.Update(ctx, func(tx store.Tx) error {
				for _, k := range all {
					if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			if err := kv.Update(ctx, func(tx store.Tx) error {
				_ = tx.Set([]byte("a/rolled-back"), nil)
				return boom
			}); !errors.Is(err, boom) {
				t.Fatalf("update error %v", err)
			}
			err := kv.View(ctx, func(tx store.Tx) error {
				if _, err := tx.Get([]byte("a/rolled-back")); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("rolled-back key: %v", err)
				}
				if err := tx.Set([]byte("z"), nil); !errors.Is(err, store.ErrReadOnly) {
					t.Fatalf("set in a view: %v", err)
				}
				v, err := tx.Get([]byte("a/x"))
				if err != nil || string(v) != "va/x" {
					t.Fatalf("get %q %v", v, err)
				}
				v[0] = 'X'
				if v, _ := tx.Get([]byte("a/x")); string(v) != "va/x" {
					t.Fatalf("Get returned the stored bytes, not a copy: %q", v)
				}
				for _, c := range []struct {
					opts store.IterOptions
					seek string
					want []string
				}{
					{store.IterOptions{Prefix: []byte("a/")}, "", []string{"a/", "a/x", "a/\xff\xff\xff\xff"}},
					{store.IterOptions{Prefix: []byte("a/"), Reverse: true}, "", []string{"a/\xff\xff\xff\xff", "a/x", "a/"}},
					{store.IterOptions{Prefix: []byte("a/"), Reverse: true}, "a/y", []string{"a/x", "a/"}},
					{store.IterOptions{Prefix: []byte("a/"), Reverse: true}, "a/x", []string{"a/x", "a/"}},
					{store.IterOptions{Prefix: []byte("a/")}, "a/w", []string{"a/x", "a/\xff\xff\xff\xff"}},
					{store.IterOptions{Prefix: []byte("\xff"), Reverse: true}, "", []string{"\xff\xff/z", "\xff"}},
					{store.IterOptions{Reverse: true, KeysOnly: true}, "", []string{"\xff\xff/z", "\xff", "b", "a0", "a/\xff\xff\xff\xff", "a/x", "a/", "a"}},
					{store.IterOptions{}, "", all},
				} {
					var seek []byte
					if c.seek != "" {
						seek = []byte(c.seek)
					}
					if got := keys(t, tx, c.opts, seek); !slices.Equal(got, c.want) {
						t.Fatalf("iterate %+v from %q: %q, want %q", c.opts, c.seek, got, c.want)
					}
				}
				it := tx.Iterate(store.IterOptions{Prefix: []byte("a/x")})
				it.Rewind()
				v, err = it.Value()
				if err != nil || string(v) != "va/x" {
					t.Fatalf("iterator value %q %v", v, err)
				}
				v[0] = 'X'
				if v, _ := it.Value(); string(v) != "va/x" {
					t.Fatalf("Value returned the stored bytes: %q", v)
				}
				it.Close()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			// A read transaction is a snapshot; a write one reads its own
			// writes, in Get and Iterate.
			snap, err := kv.Begin(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			w, err := kv.Begin(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Set([]byte("a/new"), []byte("n")); err != nil {
				t.Fatal(err)
			}
			if err := w.Delete([]byte("a/")); err != nil {
				t.Fatal(err)
			}
			if got := keys(t, w, store.IterOptions{Prefix: []byte("a/")}, nil); !slices.Equal(got, []string{"a/new", "a/x", "a/\xff\xff\xff\xff"}) {
				t.Fatalf("own writes in iterate: %q", got)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			w.Discard() // after Commit: a no-op
			if _, err := snap.Get([]byte("a/new")); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("snapshot sees a later commit: %v", err)
			}
			snap.Discard()
			if err := kv.View(ctx, func(tx store.Tx) error {
				_, err := tx.Get([]byte("a/new"))
				return err
			}); err != nil {
				t.Fatalf("committed key: %v", err)
			}

			// Too big a transaction fails with ErrTxnTooBig, applying nothing.
			big := bytes.Repeat([]byte{7}, 64<<10)
			err = kv.Update(ctx, func(tx store.Tx) error {
				for i := range 1000 {
					if err := tx.Set(append([]byte("big/"), byte(i>>8), byte(i)), big); err != nil {
						return err
					}
				}
				return nil
			})
			if !errors.Is(err, store.ErrTxnTooBig) {
				t.Fatalf("64 MiB in one transaction: %v", err)
			}
			if err := kv.DropPrefix(ctx, []byte("a/"), []byte("big/")); err != nil {
				t.Fatal(err)
			}
			if err := kv.View(ctx, func(tx store.Tx) error {
				if got := keys(t, tx, store.IterOptions{}, nil); !slices.Equal(got, []string{"a", "a0", "b", "\xff", "\xff\xff/z"}) {
					t.Fatalf("after DropPrefix: %q", got)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMemoryTTL: a key set with a TTL reads as absent once it expires
// (memory backend, on its own clock).
func TestMemoryTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	kv := memory.New(memory.Options{Now: func() time.Time { return now }})
	if err := kv.Update(ctx, func(tx store.Tx) error { return tx.SetWithTTL([]byte("t/k"), []byte("v"), time.Minute) }); err != nil {
		t.Fatal(err)
	}
	get := func() error {
		return kv.View(ctx, func(tx store.Tx) error {
			if n := len(keys(t, tx, store.IterOptions{Prefix: []byte("t/")}, nil)); n != 1 {
				_, err := tx.Get([]byte("t/k"))
				if err == nil {
					t.Fatal("Get sees a key Iterate does not")
				}
				return err
			}
			_, err := tx.Get([]byte("t/k"))
			return err
		})
	}
	if err := get(); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if err := get(); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after expiry: %v", err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
