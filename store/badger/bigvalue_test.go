package badger

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	dgbadger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/internal/rawgrep"
	"github.com/doorstep-health/doorstep/store"
)

// A value over Badger's value threshold (1 MiB) never reaches the value
// log: after it is deleted and its key dropped (what an erasure's scrub
// does), no file of the directory holds it, in the memtable's log or in
// tables after a reopen. Before chunk form 1 it stayed in 000001.vlog.
func TestBigValueDroppedFromDisk(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		dir := t.TempDir()
		opts := Options{Dir: dir, Logger: quiet(), SmallMemory: true}
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		const secret = "Zebedee Quartermaine"
		// 2.6 MiB: over Badger's batch limit with small memtables (2.4 MiB).
		big := []byte(strings.Repeat(secret+" visited on Tuesday. ", 1<<16))
		err = s.Update(context.Background(), func(tx store.Tx) error {
			if err := tx.Set([]byte("r/erased"), big); err != nil {
				return err
			}
			return tx.Set([]byte("r/kept"), []byte("Neighbour Norah"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if reopen {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(opts); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.View(context.Background(), func(tx store.Tx) error {
			v, err := tx.Get([]byte("r/erased"))
			if err == nil && !bytes.Equal(v, big) {
				t.Errorf("read back %d bytes, want %d", len(v), len(big))
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if f, _ := rawgrep.Files(dir, secret); len(f) == 0 {
			t.Fatal("secret not on disk before the drop: the test proves nothing")
		}
		if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Delete([]byte("r/erased")) }); err != nil {
			t.Fatal(err)
		}
		if err := s.DropPrefix(context.Background(), []byte("r/erased")); err != nil {
			t.Fatal(err)
		}
		if f, err := rawgrep.Files(dir, secret); err != nil || len(f) > 0 {
			t.Errorf("reopen=%v: secret still in %v after delete and DropPrefix (%v)", reopen, f, err)
		}
		if f, _ := rawgrep.Files(dir, "Neighbour Norah"); len(f) == 0 {
			t.Error("the kept key is gone from disk")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A value written before chunk form 1 (a plain value in the value log,
// no user meta) still reads, and an overwrite stores it in chunks.
func TestPlainBigValueStillReads(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := bytes.Repeat([]byte("legacy "), 200<<10) // 1.4 MiB, into the value log
	if err := s.db.Update(func(txn *dgbadgerTxn) error { return txn.Set([]byte("r/old"), old) }); err != nil {
		t.Fatal(err)
	}
	get := func() []byte {
		var v []byte
		if err := s.View(context.Background(), func(tx store.Tx) error { v, err = tx.Get([]byte("r/old")); return err }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if !bytes.Equal(get(), old) {
		t.Fatal("plain big value not read back")
	}
	nu := bytes.Repeat([]byte("chunked "), 200<<10)
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Set([]byte("r/old"), nu) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(get(), nu) || s.chunked["r/old"].count != 4 {
		t.Fatalf("overwrite: chunks %+v", s.chunked["r/old"])
	}
}

type dgbadgerTxn = dgbadger.Txn

// rawChunkKeys counts the keys in the chunk range, sentinels included.
func rawChunkKeys(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *dgbadger.Txn) error {
		it := txn.NewIterator(dgbadger.IteratorOptions{Prefix: chunkPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Chunks written ahead of a transaction that does not commit are deleted:
// at once on Discard, an error from Update's function, or a read-only
// Set; and, for those a crash left behind, when the store opens.
func TestUncommittedChunksDeleted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{Dir: dir, Logger: quiet(), SmallMemory: true}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("uncommitted "), 100<<10) // 1.2 MiB: 3 chunks
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Set([]byte("r/kept"), big) }); err != nil {
		t.Fatal(err)
	}
	if n := rawChunkKeys(t, s); n != 3 {
		t.Fatalf("%d chunk keys for one 1.2 MiB value, want 3", n)
	}
	txn, err := s.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("r/x"), big); err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("r/kept"), big[:1<<20]); err != nil { // over a committed big value
		t.Fatal(err)
	}
	txn.Discard()
	errNo := errors.New("no")
	if err := s.Update(ctx, func(tx store.Tx) error { _ = tx.Set([]byte("r/y"), big); return errNo }); !errors.Is(err, errNo) {
		t.Fatal(err)
	}
	if err := s.View(ctx, func(tx store.Tx) error { return tx.Set([]byte("r/z"), big) }); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("big Set in a View: %v", err)
	}
	if n := rawChunkKeys(t, s); n != 3 {
		t.Fatalf("%d chunk keys after uncommitted writes, want the 3 of r/kept", n)
	}
	if err := s.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get([]byte("r/kept"))
		if err == nil && !bytes.Equal(v, big) {
			t.Error("r/kept changed by a discarded write")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// A crash after the chunks' transactions, before the head's.
	s.gen++
	if err := s.writeChunks([]byte("r/crash"), big, chunkRef{gen: s.gen, count: 3}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := rawChunkKeys(t, s); n != 3 {
		t.Fatalf("%d chunk keys after reopening, want the 3 of r/kept", n)
	}
	if r := s.chunked["r/kept"]; r.count != 3 || len(s.chunked) != 1 {
		t.Fatalf("chunk references after reopening: %+v", s.chunked)
	}
}
