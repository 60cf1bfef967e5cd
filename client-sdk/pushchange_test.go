package client

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
)

// TestPackWireSameAsRepacked: the packed push of loaded changes
// (packWire, stored blocks sent as they are where they can be) decodes
// with the server's decoder (api.UnpackPushBlocks) to exactly what the
// old path's did (every stored change decoded, then packed again by
// packPush), for big writes sealed as written, small writes sealed
// together, an entry stored by an earlier build as one block too big for
// the wire, an entry in the msgpack form, an empty change and a stub. Only
// the big writes go as stored; every block fits api.MaxPackedBlock, and
// the request is no bigger than the old path's.
func TestPackWireSameAsRepacked(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, Options{Dir: t.TempDir(), EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.readsPacked.Store(true)
	big := func(n int) {
		err := r.Batch(ctx, func(b *Batch) error {
			for i := range n {
				row := map[string]any{}
				for f := range 30 {
					row[fmt.Sprintf("f%02d", f)] = fmt.Sprintf("%06d%s", i, strings.Repeat("v", 14))
				}
				if _, err := b.Create(Ref{Team: "wigan", Collection: "bench_rows"}, row); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	big(100)
	big(100)
	for i := range 40 {
		if _, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": fmt.Sprint("p", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	// Entries as earlier builds stored them, with the first big write's
	// ops: one block of 3,000 ops, and the msgpack form; then an empty
	// change.
	var first *api.Change
	err = r.db.Update(func(txn *badger.Txn) error {
		v, err := get(txn, u64Key(prefChange, 1))
		if err != nil {
			return err
		}
		if first, err = decodeChange(v); err != nil {
			return err
		}
		next, err := get(txn, keyNextSeq)
		if err != nil {
			return err
		}
		seq := u64(next)
		blk, err := packBlock(first.Ops)
		if err != nil {
			return err
		}
		if len(blk) <= api.MaxPackedBlock {
			t.Fatalf("a block of %d bytes: not too big for the wire", len(blk))
		}
		if err := putSealed(txn, seq+1, appendEntry(nil, seq+1, len(first.Ops), opsSize(first.Ops), [][]byte{blk})); err != nil {
			return err
		}
		mp, err := encodeChangeMsgpack(&api.Change{Seq: seq + 2, Ops: first.Ops[:50]})
		if err != nil {
			return err
		}
		if err := putSealed(txn, seq+2, mp); err != nil {
			return err
		}
		return putEmptyChange(txn, seq+3)
	})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := r.loadChanges(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 6 {
		t.Fatalf("%d changes loaded, want 6", len(changes))
	}
	changes = append(changes, pushChange{Seq: 99}) // a stub (highwater.go)
	var old []api.Change
	err = r.view(func(txn *badger.Txn) error {
		for _, c := range changes {
			v, err := get(txn, u64Key(prefChange, c.Seq))
			if err != nil {
				return err
			}
			if v == nil {
				old = append(old, api.Change{Seq: c.Seq})
				continue
			}
			dc, err := decodeChange(v)
			if err != nil {
				return err
			}
			old = append(old, *dc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, true, false, false, false, false, false} {
		if got := changes[i].wireReady(); got != want {
			t.Errorf("change %d (%d ops, %d blocks): sent as stored %v, want %v", changes[i].Seq, changes[i].n, len(changes[i].blocks), got, want)
		}
		if changes[i].ops != nil && i < 2 {
			t.Errorf("change %d: ops decoded at load", changes[i].Seq)
		}
	}
	blocks, ok, err := packWire(changes)
	if err != nil || !ok {
		t.Fatalf("packWire: ok %v, %v", ok, err)
	}
	oldBlocks, ok := packPush(old)
	if !ok {
		t.Fatal("packPush: not packed")
	}
	size := func(bs [][]byte) (n int) {
		for _, b := range bs {
			if len(b) > api.MaxPackedBlock {
				t.Fatalf("a block of %d bytes", len(b))
			}
			n += len(b)
		}
		return n
	}
	got, err := api.UnpackPushBlocks(blocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, err := api.UnpackPushBlocks(oldBlocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the server decodes %d changes from the passthrough, %d from the old path, not the same", len(got), len(want))
	}
	if !reflect.DeepEqual(want[0].Ops, first.Ops) {
		t.Fatal("the old path's first change is not the first write")
	}
	if n, m := size(blocks), size(oldBlocks); n > m {
		t.Errorf("passthrough: %d bytes in %d blocks, old path %d in %d", n, len(blocks), m, len(oldBlocks))
	}
	t.Logf("passthrough %d bytes in %d blocks, old path %d in %d", size(blocks), len(blocks), size(oldBlocks), len(oldBlocks))
	// The plain push decodes the same ops.
	plain, err := plainChanges(changes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plain {
		if plain[i].Seq != old[i].Seq || !reflect.DeepEqual(plain[i].Ops, old[i].Ops) {
			t.Fatalf("plain change %d differs from the stored one", plain[i].Seq)
		}
	}
}

// TestCorruptStoredBlockKeepsChange: a stored change whose block has a
// sound header but ops that do not decode (loadChanges reads only the
// header now) fails the Sync with an error when its ops are needed (the
// plain push of this fake server); the change stays in the outbox, and
// the next request is no probe (nothing was sent).
func TestCorruptStoredBlockKeepsChange(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	r := openTest(t, t.TempDir(), func(o *Options) { o.ServerURL = f.srv.URL })
	if _, err := r.Login(ctx, "ann", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "p"}); err != nil {
		t.Fatal(err)
	}
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	err := r.db.Update(func(txn *badger.Txn) error {
		v, err := get(txn, u64Key(prefChange, 1))
		if err != nil {
			return err
		}
		e, _, err := parseEntry(v)
		if err != nil {
			return err
		}
		// A byte past the block's last column: its header still reads.
		blk := append(append([]byte(nil), e.blocks[0]...), 0)
		return txn.Set(u64Key(prefChange, 1), appendEntry(nil, e.seq, e.ops, e.est, [][]byte{blk}))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx); err == nil {
		t.Fatal("Sync pushed a change that does not decode")
	}
	if r.hw.probe {
		t.Error("a request that never went made the next a probe")
	}
	changes, err := r.loadChanges(0, 10)
	if err != nil || len(changes) != 1 || changes[0].Seq != 1 || changes[0].n == 0 {
		t.Fatalf("outbox after the failed Sync: %d changes (%v)", len(changes), err)
	}
	if applied, _ := f.stats(); applied != 0 {
		t.Fatalf("the server applied %d changes", applied)
	}
}
