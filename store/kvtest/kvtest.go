package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/store"
)

// Reopen opens the same store again (same directory, same database) after
// the suite closed it. nil means the backend keeps nothing past Close (an
// in-memory store): the durability test is then skipped.
type Reopen func() (store.KV, error)

// Opener opens a new, empty store for t, and says how to reopen it.
type Opener func(t *testing.T) (store.KV, Reopen)

// Run runs the conformance suite on the backend open opens.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"EmptyAndLargeValues", testEmptyAndLargeValues},
		{"BigValues", testBigValues}, // bigvalues.go
		{"ReadYourWrites", testReadYourWrites},
		{"RollbackOnError", testRollbackOnError},
		{"ReadOnly", testReadOnly},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"SerializedWriters", testSerializedWriters},
		{"IteratePrefix", testIteratePrefix},
		{"IterateOwnWrites", testIterateOwnWrites},
		{"IterateMany", testIterateMany},
		{"Seek", testSeek},
		{"SeekEdges", testSeekEdges},
		{"RewindReverseFF", testRewindReverseFF},
		{"KeysOnly", testKeysOnly},
		{"DeleteWhileIterating", testDeleteWhileIterating},
		{"TTL", testTTL},
		{"DropPrefix", testDropPrefix},
		{"BeginCommitDiscard", testBeginCommitDiscard},
		{"Durable", testDurable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// fresh opens a store for t and closes it at the end.
func fresh(t *testing.T, open Opener) (store.KV, Reopen) {
	t.Helper()
	kv, reopen := open(t)
	t.Cleanup(func() {
		if err := kv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return kv, reopen
}

func ctx() context.Context { return context.Background() }

func set(t *testing.T, kv store.KV, kvs ...string) {
	t.Helper()
	if len(kvs)%2 != 0 {
		t.Fatal("set: odd number of arguments")
	}
	err := kv.Update(ctx(), func(tx store.Tx) error {
		for i := 0; i < len(kvs); i += 2 {
			if err := tx.Set([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// get reads key in a fresh View: its value, or "" and false when absent.
func get(t *testing.T, kv store.KV, key string) (string, bool) {
	t.Helper()
	var v []byte
	var found bool
	err := kv.View(ctx(), func(tx store.Tx) error {
		b, err := tx.Get([]byte(key))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, found = b, true
		return nil
	})
	if err != nil {
		t.Fatalf("View Get %q: %v", key, err)
	}
	return string(v), found
}

func wantValue(t *testing.T, kv store.KV, key, want string) {
	t.Helper()
	got, ok := get(t, kv, key)
	if !ok {
		t.Fatalf("Get %q: not found, want %q", key, want)
	}
	if got != want {
		t.Fatalf("Get %q = %q, want %q", key, got, want)
	}
}

func wantAbsent(t *testing.T, kv store.KV, key string) {
	t.Helper()
	if got, ok := get(t, kv, key); ok {
		t.Fatalf("Get %q = %q, want not found", key, got)
	}
}

// keys walks it from its current position to the end.
func keys(t *testing.T, it store.Iterator) []string {
	t.Helper()
	var out []string
	for ; it.Valid(); it.Next() {
		out = append(out, string(it.Key()))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterator: %v", err)
	}
	return out
}

// scan lists the keys of prefix (Rewind, then to the end) in a View.
func scan(t *testing.T, kv store.KV, opts store.IterOptions) []string {
	t.Helper()
	var out []string
	err := kv.View(ctx(), func(tx store.Tx) error {
		it := tx.Iterate(opts)
		defer it.Close()
		it.Rewind()
		out = keys(t, it)
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantKeys(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func testGetSetDelete(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	err := kv.View(ctx(), func(tx store.Tx) error {
		_, err := tx.Get([]byte("missing"))
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("a Get of a missing key: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	set(t, kv, "a", "1", "b", "2")
	wantValue(t, kv, "a", "1")
	wantValue(t, kv, "b", "2")
	set(t, kv, "a", "one")
	wantValue(t, kv, "a", "one")

	// The value Get returns belongs to the caller.
	err = kv.View(ctx(), func(tx store.Tx) error {
		v, err := tx.Get([]byte("a"))
		if err != nil {
			return err
		}
		for i := range v {
			v[i] = 'X'
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, kv, "a", "one")

	err = kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.Delete([]byte("a")); err != nil {
			return err
		}
		return tx.Delete([]byte("never-stored")) // not an error
	})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, kv, "a")
	wantValue(t, kv, "b", "2")

	// Binary keys and values, all 256 byte values.
	var all []byte
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	set(t, kv, string(all), string(all))
	wantValue(t, kv, string(all), string(all))
}

func testEmptyAndLargeValues(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	large := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	err := kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.Set([]byte("nil"), nil); err != nil {
			return err
		}
		if err := tx.Set([]byte("empty"), []byte{}); err != nil {
			return err
		}
		return tx.Set([]byte("large"), large)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"nil", "empty"} {
		v, ok := get(t, kv, k)
		if !ok || v != "" {
			t.Fatalf("key %q set to an empty value: found=%v value=%q", k, ok, v)
		}
	}
	wantValue(t, kv, "large", string(large))
}

func testReadYourWrites(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "gone", "x", "kept", "y")
	err := kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.Set([]byte("new"), []byte("1")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("new")); err != nil || string(v) != "1" {
			return fmt.Errorf("own Set not read back: %q, %v", v, err)
		}
		if err := tx.Set([]byte("new"), []byte("2")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("new")); err != nil || string(v) != "2" {
			return fmt.Errorf("own overwrite not read back: %q, %v", v, err)
		}
		if err := tx.Delete([]byte("gone")); err != nil {
			return err
		}
		if _, err := tx.Get([]byte("gone")); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("own Delete still reads: %v", err)
		}
		if err := tx.Set([]byte("tmp"), []byte("t")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("tmp")); err != nil {
			return err
		}
		if _, err := tx.Get([]byte("tmp")); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("a Set then Delete still reads: %v", err)
		}
		if err := tx.Delete([]byte("kept")); err != nil {
			return err
		}
		if err := tx.Set([]byte("kept"), []byte("back")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("kept")); err != nil || string(v) != "back" {
			return fmt.Errorf("a Delete then Set: %q, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, kv, "new", "2")
	wantAbsent(t, kv, "gone")
	wantAbsent(t, kv, "tmp")
	wantValue(t, kv, "kept", "back")
}

func testRollbackOnError(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "a", "1")
	boom := errors.New("boom")
	err := kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.Set([]byte("a"), []byte("2")); err != nil {
			return err
		}
		if err := tx.Set([]byte("b"), []byte("2")); err != nil {
			return err
		}
		if _, err := tx.Get([]byte("b")); err != nil { // a read may flush writes
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	wantValue(t, kv, "a", "1")
	wantAbsent(t, kv, "b")
}

func testReadOnly(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "a", "1")
	err := kv.View(ctx(), func(tx store.Tx) error {
		if err := tx.Set([]byte("a"), []byte("2")); !errors.Is(err, store.ErrReadOnly) {
			return fmt.Errorf("a Set in View: %v, want ErrReadOnly", err)
		}
		if err := tx.Delete([]byte("a")); !errors.Is(err, store.ErrReadOnly) {
			return fmt.Errorf("a Delete in View: %v, want ErrReadOnly", err)
		}
		if err := tx.SetWithTTL([]byte("a"), []byte("2"), time.Hour); !errors.Is(err, store.ErrReadOnly) {
			return fmt.Errorf("SetWithTTL in View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	txn, err := kv.Begin(ctx(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("a"), []byte("3")); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("Set in Begin(false): %v, want ErrReadOnly", err)
	}
	txn.Discard()
	wantValue(t, kv, "a", "1")
}

// A read-only transaction sees the store as it was when it began, whatever
// commits while it is open, and a later one sees the commit.
func testSnapshotIsolation(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "s/a", "1", "s/b", "1")
	txn, err := kv.Begin(ctx(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Discard()
	// A concurrent commit, from another goroutine, after Begin and before
	// the snapshot's first read.
	done := make(chan error, 1)
	go func() {
		done <- kv.Update(ctx(), func(tx store.Tx) error {
			if err := tx.Set([]byte("s/a"), []byte("2")); err != nil {
				return err
			}
			if err := tx.Delete([]byte("s/b")); err != nil {
				return err
			}
			return tx.Set([]byte("s/c"), []byte("2"))
		})
	}()
	if err := <-done; err != nil {
		t.Fatalf("concurrent Update: %v", err)
	}
	if v, err := txn.Get([]byte("s/a")); err != nil || string(v) != "1" {
		t.Errorf("snapshot Get s/a = %q, %v; want the value from before the commit, 1", v, err)
	}
	if v, err := txn.Get([]byte("s/b")); err != nil || string(v) != "1" {
		t.Errorf("snapshot Get s/b = %q, %v; want 1 (deleted after the snapshot)", v, err)
	}
	it := txn.Iterate(store.IterOptions{Prefix: []byte("s/")})
	it.Rewind()
	wantKeys(t, "snapshot iteration", keys(t, it), []string{"s/a", "s/b"})
	it.Close()
	// A second commit while the snapshot has already read.
	set(t, kv, "s/a", "3")
	if v, err := txn.Get([]byte("s/a")); err != nil || string(v) != "1" {
		t.Errorf("snapshot Get s/a after a second commit = %q, %v; want 1", v, err)
	}
	txn.Discard()
	wantValue(t, kv, "s/a", "3")
	wantAbsent(t, kv, "s/b")
	wantValue(t, kv, "s/c", "2")
}

// Two goroutines each increment one counter n times with read, bump,
// write in Update: write transactions are serialized, so none is lost.
func testSerializedWriters(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if err := Increment(ctx(), kv, []byte("counter")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment: %v", err)
	}
	wantValue(t, kv, "counter", strconv.Itoa(2*n))
}

// Increment adds one to the decimal counter stored under key (absent: 0)
// in one Update: the read-modify-write the serialization tests count.
func Increment(ctx context.Context, kv store.KV, key []byte) error {
	return kv.Update(ctx, func(tx store.Tx) error {
		n := 0
		v, err := tx.Get(key)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if n, err = strconv.Atoi(string(v)); err != nil {
				return fmt.Errorf("counter %q: %w", v, err)
			}
		}
		runtime.Gosched() // widen the read-to-write window a racing writer would use
		return tx.Set(key, []byte(strconv.Itoa(n+1)))
	})
}

func testIteratePrefix(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv,
		"a", "-", "a.", "-", "a0", "-", "b/", "-", "a/\xff\xff", "v5",
		"a/", "v0", "a/1", "v1", "a/1/x", "v2", "a/2", "v3", "a/\xff", "v4")
	in := []string{"a/", "a/1", "a/1/x", "a/2", "a/\xff", "a/\xff\xff"}
	wantKeys(t, "forward", scan(t, kv, store.IterOptions{Prefix: []byte("a/")}), in)
	var rev []string
	for i := len(in) - 1; i >= 0; i-- {
		rev = append(rev, in[i])
	}
	wantKeys(t, "reverse", scan(t, kv, store.IterOptions{Prefix: []byte("a/"), Reverse: true}), rev)
	wantKeys(t, "absent prefix", scan(t, kv, store.IterOptions{Prefix: []byte("zz")}), nil)
	wantKeys(t, "absent prefix reverse", scan(t, kv, store.IterOptions{Prefix: []byte("zz"), Reverse: true}), nil)
	all := []string{"a", "a.", "a/", "a/1", "a/1/x", "a/2", "a/\xff", "a/\xff\xff", "a0", "b/"}
	wantKeys(t, "nil prefix", scan(t, kv, store.IterOptions{}), all)
	// Values along the way.
	err := kv.View(ctx(), func(tx store.Tx) error {
		it := tx.Iterate(store.IterOptions{Prefix: []byte("a/")})
		defer it.Close()
		i := 0
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Value()
			if err != nil {
				return err
			}
			if want := "v" + strconv.Itoa(i); string(v) != want {
				return fmt.Errorf("value of %q = %q, want %q", it.Key(), v, want)
			}
			i++
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	// A new iterator is not positioned until Rewind or Seek... and one
	// that ran out stays out.
	err = kv.View(ctx(), func(tx store.Tx) error {
		it := tx.Iterate(store.IterOptions{Prefix: []byte("b/")})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			return errors.New("b/ iterator not valid after Rewind")
		}
		it.Next()
		if it.Valid() {
			return fmt.Errorf("b/ iterator valid past its only key at %q", it.Key())
		}
		it.Rewind()
		if !it.Valid() || string(it.Key()) != "b/" {
			return errors.New("second Rewind did not return to the first key")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A write transaction's iterator sees its own earlier Sets and Deletes,
// merged in order with the committed keys.
func testIterateOwnWrites(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "p/1", "c", "p/3", "c", "p/5", "c")
	err := kv.Update(ctx(), func(tx store.Tx) error {
		for _, k := range []string{"p/2", "p/6", "p/0"} {
			if err := tx.Set([]byte(k), []byte("own")); err != nil {
				return err
			}
		}
		if err := tx.Delete([]byte("p/3")); err != nil {
			return err
		}
		if err := tx.Set([]byte("p/5"), []byte("own")); err != nil {
			return err
		}
		it := tx.Iterate(store.IterOptions{Prefix: []byte("p/")})
		it.Rewind()
		got := keys(t, it)
		it.Close()
		if want := []string{"p/0", "p/1", "p/2", "p/5", "p/6"}; !equal(got, want) {
			return fmt.Errorf("forward own writes: got %q want %q", got, want)
		}
		it = tx.Iterate(store.IterOptions{Prefix: []byte("p/"), Reverse: true})
		it.Seek([]byte("p/4"))
		got = keys(t, it)
		it.Close()
		if want := []string{"p/2", "p/1", "p/0"}; !equal(got, want) {
			return fmt.Errorf("reverse Seek over own writes: got %q want %q", got, want)
		}
		it = tx.Iterate(store.IterOptions{Prefix: []byte("p/")})
		defer it.Close()
		it.Seek([]byte("p/5"))
		if !it.Valid() {
			return errors.New("a Seek to p/5 not valid")
		}
		if v, err := it.Value(); err != nil || string(v) != "own" {
			return fmt.Errorf("value of rewritten p/5 = %q, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// More keys than any backend's default batch, with small and large batch
// hints, forward and reverse.
func testIterateMany(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	const n = 2500
	var want []string
	err := kv.Update(ctx(), func(tx store.Tx) error {
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("m/%05d", i)
			want = append(want, k)
			if err := tx.Set([]byte(k), []byte(k)); err != nil {
				return err
			}
		}
		return tx.Set([]byte("n/0"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	var rev []string
	for i := n - 1; i >= 0; i-- {
		rev = append(rev, want[i])
	}
	for _, batch := range []int{0, 1, 7, 5000} {
		wantKeys(t, fmt.Sprintf("forward batch %d", batch), scan(t, kv, store.IterOptions{Prefix: []byte("m/"), Batch: batch}), want)
		wantKeys(t, fmt.Sprintf("reverse batch %d", batch), scan(t, kv, store.IterOptions{Prefix: []byte("m/"), Batch: batch, Reverse: true}), rev)
	}
}

func testSeek(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "a", "-", "k/b", "-", "k/d", "-", "k/f", "-", "l", "-")
	cases := []struct {
		reverse bool
		seek    string
		want    []string
	}{
		{false, "k/d", []string{"k/d", "k/f"}},
		{false, "k/c", []string{"k/d", "k/f"}},
		{false, "k/", []string{"k/b", "k/d", "k/f"}},
		{false, "a", []string{"k/b", "k/d", "k/f"}}, // before the prefix
		{false, "", []string{"k/b", "k/d", "k/f"}},
		{false, "k/g", nil},
		{false, "z", nil}, // after the prefix
		{true, "k/d", []string{"k/d", "k/b"}},
		{true, "k/e", []string{"k/d", "k/b"}},
		{true, "k/\xff", []string{"k/f", "k/d", "k/b"}},
		{true, "z", []string{"k/f", "k/d", "k/b"}}, // after the prefix
		{true, "k/a", nil},
		{true, "a", nil}, // before the prefix
	}
	err := kv.View(ctx(), func(tx store.Tx) error {
		for _, c := range cases {
			it := tx.Iterate(store.IterOptions{Prefix: []byte("k/"), Reverse: c.reverse})
			it.Seek([]byte(c.seek))
			got := keys(t, it)
			// Seek again on the same (exhausted) iterator.
			it.Seek([]byte(c.seek))
			again := keys(t, it)
			it.Close()
			if !equal(got, c.want) || !equal(again, c.want) {
				return fmt.Errorf("reverse=%v Seek(%q): got %q then %q, want %q", c.reverse, c.seek, got, again, c.want)
			}
		}
		// Seek back and forth in one iterator.
		it := tx.Iterate(store.IterOptions{Prefix: []byte("k/")})
		defer it.Close()
		it.Seek([]byte("k/f"))
		it.Seek([]byte("k/a"))
		if !it.Valid() || string(it.Key()) != "k/b" {
			return errors.New("a Seek backwards on a forward iterator did not return to k/b")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The nil prefix: Seek covers every key.
	err = kv.View(ctx(), func(tx store.Tx) error {
		it := tx.Iterate(store.IterOptions{Reverse: true})
		defer it.Close()
		it.Seek([]byte("k/c"))
		if got, want := keys(t, it), []string{"k/b", "a"}; !equal(got, want) {
			return fmt.Errorf("nil prefix reverse Seek: got %q want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Reverse Rewind lands on the last key of the prefix, for prefixes ending
// in 0xFF bytes (whose successor is not prefix+1) and for the nil prefix.
// testSeekEdges: a reverse Seek to a key before a prefix's keys exhausts
// the iterator when the prefix is all 0xFF bytes too (whose range no key
// is past), and a reverse Seek to the empty key, which no key is at or
// before, exhausts an iterator over every key.
func testSeekEdges(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "a", "1", "\xff\xffa", "2", "\xff\x00", "3")
	err := kv.View(ctx(), func(tx store.Tx) error {
		for _, c := range []struct {
			prefix, seek string
			want         []string
		}{
			{"\xff", "a", nil},
			{"\xff", "\xff\x01", []string{"\xff\x00"}},
			{"\xff", "\xff\xff\xff", []string{"\xff\xffa", "\xff\x00"}},
			{"", "", nil},
			{"", "b", []string{"a"}},
		} {
			opts := store.IterOptions{Prefix: []byte(c.prefix), Reverse: true}
			if c.prefix == "" {
				opts.Prefix = nil
			}
			it := tx.Iterate(opts)
			it.Seek([]byte(c.seek))
			got := keys(t, it)
			it.Close()
			if !equal(got, c.want) {
				return fmt.Errorf("prefix %q, reverse Seek(%q): %q, want %q", c.prefix, c.seek, got, c.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testRewindReverseFF(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv,
		"p\xfe\xff", "-", "p\xff", "-", "p\xff\x00", "-", "p\xff\xff", "-", "p\xff\xff\xff\x01", "-", "q", "-",
		"\xff", "-", "\xff\xff", "-", "\xff\xff\x00", "-", "\x00", "-")
	cases := []struct {
		prefix string
		nilPfx bool
		want   []string // forward order
	}{
		{prefix: "p\xff", want: []string{"p\xff", "p\xff\x00", "p\xff\xff", "p\xff\xff\xff\x01"}},
		{prefix: "p\xff\xff", want: []string{"p\xff\xff", "p\xff\xff\xff\x01"}},
		{prefix: "p", want: []string{"p\xfe\xff", "p\xff", "p\xff\x00", "p\xff\xff", "p\xff\xff\xff\x01"}},
		{prefix: "\xff", want: []string{"\xff", "\xff\xff", "\xff\xff\x00"}},
		{prefix: "\xff\xff", want: []string{"\xff\xff", "\xff\xff\x00"}},
		{nilPfx: true, want: []string{"\x00", "p\xfe\xff", "p\xff", "p\xff\x00", "p\xff\xff", "p\xff\xff\xff\x01", "q", "\xff", "\xff\xff", "\xff\xff\x00"}},
	}
	for _, c := range cases {
		var p []byte
		if !c.nilPfx {
			p = []byte(c.prefix)
		}
		var rev []string
		for i := len(c.want) - 1; i >= 0; i-- {
			rev = append(rev, c.want[i])
		}
		wantKeys(t, fmt.Sprintf("forward %q", p), scan(t, kv, store.IterOptions{Prefix: p}), c.want)
		wantKeys(t, fmt.Sprintf("reverse %q", p), scan(t, kv, store.IterOptions{Prefix: p, Reverse: true}), rev)
	}
	// An empty, non-nil prefix is the nil prefix.
	wantKeys(t, "empty prefix", scan(t, kv, store.IterOptions{Prefix: []byte{}}), cases[len(cases)-1].want)
}

func testKeysOnly(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "k/1", "one", "k/2", "two", "x", "-")
	for _, reverse := range []bool{false, true} {
		err := kv.View(ctx(), func(tx store.Tx) error {
			it := tx.Iterate(store.IterOptions{Prefix: []byte("k/"), KeysOnly: true, Reverse: reverse})
			defer it.Close()
			var got []string
			for it.Rewind(); it.Valid(); it.Next() {
				v, err := it.Value() // still works
				if err != nil {
					return err
				}
				got = append(got, string(it.Key())+"="+string(v))
			}
			want := []string{"k/1=one", "k/2=two"}
			if reverse {
				want = []string{"k/2=two", "k/1=one"}
			}
			if !equal(got, want) {
				return fmt.Errorf("KeysOnly reverse=%v: got %q want %q", reverse, got, want)
			}
			return it.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A write transaction may delete the key its iterator is at (and rewrite
// keys it passed); every key is still visited once.
func testDeleteWhileIterating(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	const n = 600
	err := kv.Update(ctx(), func(tx store.Tx) error {
		for i := 0; i < n; i++ {
			if err := tx.Set([]byte(fmt.Sprintf("d/%04d", i)), []byte("v")); err != nil {
				return err
			}
		}
		return tx.Set([]byte("e"), []byte("kept"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, reverse := range []bool{false, true} {
		seen := 0
		err = kv.Update(ctx(), func(tx store.Tx) error {
			it := tx.Iterate(store.IterOptions{Prefix: []byte("d/"), Reverse: reverse, KeysOnly: true, Batch: 50})
			defer it.Close()
			prev := ""
			for it.Rewind(); it.Valid(); it.Next() {
				k := string(it.Key())
				if prev != "" && (k <= prev) != reverse {
					return fmt.Errorf("out of order: %q after %q", k, prev)
				}
				prev = k
				seen++
				if reverse {
					// Rewrite the key passed (it is at or after the current
					// one in byte order, so behind a reverse iterator).
					if err := tx.Set([]byte(k), []byte("w")); err != nil {
						return err
					}
				} else if err := tx.Delete([]byte(k)); err != nil {
					return err
				}
			}
			return it.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if seen != n {
			t.Fatalf("reverse=%v: visited %d keys, want %d", reverse, seen, n)
		}
		if reverse {
			break
		}
		// Forward deleted them all; write them back for the reverse pass.
		wantKeys(t, "after deleting while iterating", scan(t, kv, store.IterOptions{Prefix: []byte("d/")}), nil)
		err = kv.Update(ctx(), func(tx store.Tx) error {
			for i := 0; i < n; i++ {
				if err := tx.Set([]byte(fmt.Sprintf("d/%04d", i)), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	wantValue(t, kv, "d/0000", "w")
	wantValue(t, kv, "e", "kept")
}

func testTTL(t *testing.T, open Opener) {
	t.Parallel()
	kv, _ := fresh(t, open)
	const ttl = 2 * time.Second
	err := kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.SetWithTTL([]byte("t/short"), []byte("s"), ttl); err != nil {
			return err
		}
		if err := tx.SetWithTTL([]byte("t/long"), []byte("l"), time.Hour); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("t/short")); err != nil || string(v) != "s" {
			return fmt.Errorf("own SetWithTTL not read back: %q, %v", v, err)
		}
		return tx.Set([]byte("t/plain"), []byte("p"))
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wantValue(t, kv, "t/short", "s")
	deadline := start.Add(ttl + 3*time.Second)
	for {
		if _, ok := get(t, kv, "t/short"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("t/short still reads %v after it was set with a TTL of %v", time.Since(start), ttl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantKeys(t, "after expiry", scan(t, kv, store.IterOptions{Prefix: []byte("t/")}), []string{"t/long", "t/plain"})
	wantKeys(t, "after expiry reverse", scan(t, kv, store.IterOptions{Prefix: []byte("t/"), Reverse: true, KeysOnly: true}), []string{"t/plain", "t/long"})
	// Setting an expired key again without a TTL makes it permanent.
	set(t, kv, "t/short", "again")
	wantValue(t, kv, "t/short", "again")
	// And a plain Set over a TTL key clears its TTL.
	err = kv.Update(ctx(), func(tx store.Tx) error {
		if err := tx.SetWithTTL([]byte("t/re"), []byte("1"), ttl); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	set(t, kv, "t/re", "2")
	time.Sleep(ttl + 1100*time.Millisecond)
	wantValue(t, kv, "t/re", "2")
}

func testDropPrefix(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	set(t, kv, "x/1", "-", "x/2", "-", "x", "-", "y/1", "-", "y\xff", "-", "y\xff\xff", "-", "z/1", "-", "y/", "-")
	if err := kv.DropPrefix(ctx(), []byte("x/"), []byte("y\xff")); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "after DropPrefix", scan(t, kv, store.IterOptions{}), []string{"x", "y/", "y/1", "z/1"})
	if err := kv.DropPrefix(ctx(), []byte("absent/")); err != nil {
		t.Fatal(err)
	}
	if err := kv.DropPrefix(ctx()); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "after empty DropPrefix", scan(t, kv, store.IterOptions{}), []string{"x", "y/", "y/1", "z/1"})
	// The dropped keys can be written again.
	set(t, kv, "x/1", "new")
	wantValue(t, kv, "x/1", "new")
}

func testBeginCommitDiscard(t *testing.T, open Opener) {
	kv, _ := fresh(t, open)
	txn, err := kv.Begin(ctx(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("d"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	txn.Discard()
	txn.Discard() // twice is fine
	wantAbsent(t, kv, "d")

	txn, err = kv.Begin(ctx(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("c"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, err := txn.Get([]byte("c")); err != nil || string(v) != "1" {
		t.Fatalf("Txn read-your-writes: %q, %v", v, err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	txn.Discard() // after Commit: a no-op
	wantValue(t, kv, "c", "1")

	// A read-only Txn commits (nothing) or discards without error.
	ro, err := kv.Begin(ctx(), false)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ro.Get([]byte("c")); err != nil || string(v) != "1" {
		t.Fatalf("read-only Txn Get: %q, %v", v, err)
	}
	if err := ro.Commit(); err != nil {
		t.Fatalf("read-only Commit: %v", err)
	}
	ro.Discard()

	// A write Txn holds off other writers until it ends: Update started
	// meanwhile commits after it.
	txn, err = kv.Begin(ctx(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("order"), []byte("first")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- kv.Update(ctx(), func(tx store.Tx) error {
			return tx.Set([]byte("order"), []byte("second"))
		})
	}()
	select {
	case err := <-done:
		txn.Discard()
		t.Fatalf("Update committed (err %v) while a write Txn was open: write transactions must be serialized (store.KV), from Begin(true) to Commit or Discard", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantValue(t, kv, "order", "second")
}

func testDurable(t *testing.T, open Opener) {
	kv, reopen := open(t)
	if reopen == nil {
		if err := kv.Close(); err != nil {
			t.Fatal(err)
		}
		t.Skip("the backend keeps nothing past Close")
	}
	set(t, kv, "kept", "1")
	err := kv.Update(ctx(), func(tx store.Tx) error {
		_ = tx.Set([]byte("rolled-back"), []byte("1"))
		return errors.New("no")
	})
	if err == nil {
		t.Fatal("Update with an error returned nil")
	}
	txn, err := kv.Begin(ctx(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("txn"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
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
	wantValue(t, kv2, "kept", "1")
	wantValue(t, kv2, "txn", "1")
	wantAbsent(t, kv2, "rolled-back")
	set(t, kv2, "after", "1")
	wantValue(t, kv2, "after", "1")
}
