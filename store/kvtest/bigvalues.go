package kvtest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/doorstep-health/doorstep/store"
)

// bigValue is an n-byte value distinct for each seed, with no run of equal
// bytes a backend could hide a wrong chunk order in.
func bigValue(seed byte, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/4099) ^ seed
	}
	return string(b)
}

// Values past a backend's inline limits (store/badger stores values of
// 512 KiB and more in chunks, to keep them out of Badger's value log):
// set, overwrite big with bigger, smaller, small and big again, delete,
// read your own big writes, roll back, iterate (forward, reverse, keys
// only, the whole key space, where no internal key may show), DropPrefix
// of a key that is a prefix of another, and reopen. Each transaction
// writes at most about 1.6 MiB, under Badger's batch limit with small
// memtables.
func testBigValues(t *testing.T, open Opener) {
	kv, reopen := open(t)
	const mib = 1 << 20
	b1, b2, b3, b4 := bigValue(1, mib+mib/10), bigValue(2, mib+6*mib/10), bigValue(3, 600<<10), bigValue(4, 512<<10)
	set(t, kv, "b/0", "small zero")
	set(t, kv, "b/1", b1)
	set(t, kv, "b/2", "small two")
	wantValue(t, kv, "b/1", b1)
	all := []string{"b/0", "b/1", "b/2"}
	wantKeys(t, "prefix", scan(t, kv, store.IterOptions{Prefix: []byte("b/")}), all)
	wantKeys(t, "every key", scan(t, kv, store.IterOptions{}), all)
	wantKeys(t, "every key, keys only", scan(t, kv, store.IterOptions{KeysOnly: true}), all)
	wantKeys(t, "every key, reversed", scan(t, kv, store.IterOptions{Reverse: true}), []string{"b/2", "b/1", "b/0"})
	wantKeys(t, "prefix, reversed", scan(t, kv, store.IterOptions{Prefix: []byte("b/"), Reverse: true}), []string{"b/2", "b/1", "b/0"})
	wantKeys(t, "the 0x00 prefix", scan(t, kv, store.IterOptions{Prefix: []byte{0}}), nil)
	wantIterValues(t, kv, store.IterOptions{Prefix: []byte("b/")}, map[string]string{"b/0": "small zero", "b/1": b1, "b/2": "small two"})
	wantIterValues(t, kv, store.IterOptions{Reverse: true}, map[string]string{"b/0": "small zero", "b/1": b1, "b/2": "small two"})

	// Seek onto and past a big value.
	err := kv.View(ctx(), func(tx store.Tx) error {
		it := tx.Iterate(store.IterOptions{})
		defer it.Close()
		it.Seek([]byte("b/1"))
		if !it.Valid() || string(it.Key()) != "b/1" {
			return fmt.Errorf("seek b/1: valid=%v", it.Valid())
		}
		if v, err := it.Value(); err != nil || string(v) != b1 {
			return fmt.Errorf("seek b/1: value of %d bytes, %v", len(v), err)
		}
		it.Seek([]byte{0})
		if !it.Valid() || string(it.Key()) != "b/0" {
			return fmt.Errorf("seek 0x00: not at b/0")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, v := range []string{b2, b3, "small now", b4, b1} {
		set(t, kv, "b/1", v)
		wantValue(t, kv, "b/1", v)
		wantKeys(t, "every key after an overwrite", scan(t, kv, store.IterOptions{}), all)
	}

	// Read your own big writes; a big write then a delete in one
	// transaction; a rolled-back big write leaves the value before it.
	err = kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.Set([]byte("b/3"), []byte(b3)); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("b/3")); err != nil || string(v) != b3 {
			return fmt.Errorf("own big write: %d bytes, %v", len(v), err)
		}
		if err := tx.Set([]byte("b/4"), []byte(b4)); err != nil {
			return err
		}
		return tx.Delete([]byte("b/4"))
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, kv, "b/3", b3)
	wantAbsent(t, kv, "b/4")
	errNo := errors.New("no")
	if err := kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.Set([]byte("b/3"), []byte("small")); err != nil {
			return err
		}
		return errNo
	}); !errors.Is(err, errNo) {
		t.Fatalf("rolled-back Update: %v", err)
	}
	wantValue(t, kv, "b/3", b3)
	txn, err := kv.Begin(ctx(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("b/3"), []byte(b2)); err != nil {
		t.Fatal(err)
	}
	txn.Discard()
	wantValue(t, kv, "b/3", b3)

	// Delete, then the key space holds only the set keys.
	err = kv.Update(ctx(), func(tx store.Tx) error { return tx.Delete([]byte("b/3")) })
	if err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, kv, "b/3")
	wantKeys(t, "every key after a delete", scan(t, kv, store.IterOptions{}), all)

	// DropPrefix of a key that is a prefix of another big key's leaves
	// the shorter key whole.
	set(t, kv, "e", b4)
	set(t, kv, "e\x00", b3)
	set(t, kv, "e\x00\x01", "small")
	if err := kv.DropPrefix(ctx(), []byte("e\x00")); err != nil {
		t.Fatal(err)
	}
	wantValue(t, kv, "e", b4)
	wantAbsent(t, kv, "e\x00")
	if err := kv.DropPrefix(ctx(), []byte("b/1")); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, kv, "b/1")
	wantKeys(t, "every key after DropPrefix", scan(t, kv, store.IterOptions{}), []string{"b/0", "b/2", "e"})
	set(t, kv, "b/1", b3)

	if reopen == nil {
		if err := kv.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	kv2, err := reopen()
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer func() {
		if err := kv2.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	wantValue(t, kv2, "b/1", b3)
	wantValue(t, kv2, "e", b4)
	// After a reopen, overwriting and deleting big values still leaves
	// nothing behind.
	set(t, kv2, "e", "small e")
	wantValue(t, kv2, "e", "small e")
	if err := kv2.Update(ctx(), func(tx store.Tx) error { return tx.Delete([]byte("b/1")) }); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, kv2, "b/1")
	wantKeys(t, "every key after reopen", scan(t, kv2, store.IterOptions{}), []string{"b/0", "b/2", "e"})
}

// wantIterValues iterates opts in a View and checks every key's value.
func wantIterValues(t *testing.T, kv store.KV, opts store.IterOptions, want map[string]string) {
	t.Helper()
	n := 0
	err := kv.View(ctx(), func(tx store.Tx) error {
		it := tx.Iterate(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Value()
			if err != nil {
				return err
			}
			if w, ok := want[string(it.Key())]; !ok || !bytes.Equal(v, []byte(w)) {
				return fmt.Errorf("key %q: %d bytes, want %d (listed %v)", it.Key(), len(v), len(w), ok)
			}
			n++
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("iterated %d keys, want %d", n, len(want))
	}
}
