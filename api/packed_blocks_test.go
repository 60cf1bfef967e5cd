package api_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// unpackBlocksRef is UnpackPushBlocks as the server did it before
// (UnpackPush per block, each bounded by the ops left, then consecutive
// pieces of one seq joined in a new slice): the reference the one-array
// decoding is held to.
func unpackBlocksRef(blocks [][]byte, maxOps int) ([]api.Change, error) {
	left := maxOps
	var pieces []api.Change
	for _, b := range blocks {
		bound := left
		if maxOps > 0 && left <= 0 {
			bound = -1 // exhausted: any op is one too many
		}
		if bound < 0 {
			bound = 0
		}
		changes, err := api.UnpackPush(b, bound)
		if err != nil {
			return nil, err
		}
		for _, c := range changes {
			left -= len(c.Ops)
		}
		if maxOps > 0 && left < 0 {
			return nil, api.ErrPacked
		}
		pieces = append(pieces, changes...)
	}
	out := make([]api.Change, 0, len(pieces))
	for i := 0; i < len(pieces); {
		j, n := i+1, len(pieces[i].Ops)
		for ; j < len(pieces) && pieces[j].Seq == pieces[i].Seq; j++ {
			n += len(pieces[j].Ops)
		}
		c := pieces[i]
		if j > i+1 && n > 0 {
			c.Ops = make([]crdt.Op, 0, n)
			for _, p := range pieces[i:j] {
				c.Ops = append(c.Ops, p.Ops...)
			}
		}
		out = append(out, c)
		i = j
	}
	return out, nil
}

// samePush compares two decoded pushes by seq and ops (nil and empty op
// slices alike).
func samePush(a, b []api.Change) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Seq != b[i].Seq || len(a[i].Ops) != len(b[i].Ops) {
			return false
		}
		if len(a[i].Ops) > 0 && !reflect.DeepEqual(a[i].Ops, b[i].Ops) {
			return false
		}
	}
	return true
}

// pushBlocks packs changes as the SDK sends a large push: each change
// cut into pieces of at most per ops, one block each, so that a change
// continues from block to block.
func pushBlocks(t testing.TB, changes []api.Change, per int) [][]byte {
	var blocks [][]byte
	for _, c := range changes {
		for i := 0; i == 0 || i < len(c.Ops); i += per {
			piece := api.Change{Seq: c.Seq, Ops: c.Ops[i:min(i+per, len(c.Ops))]}
			b, err := api.PackPush([]api.Change{piece})
			if err != nil {
				t.Fatal(err)
			}
			blocks = append(blocks, b)
		}
	}
	return blocks
}

func samplePush(t testing.TB, seed uint64, changes, opsPer int) []api.Change {
	pulled := packedSample(rand.New(rand.NewPCG(seed, seed)), changes, opsPer)
	out := make([]api.Change, 0, len(pulled)+1)
	for i, pc := range pulled {
		ops, err := pc.Ops.Ops()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, api.Change{Seq: uint64(100 + i), Ops: ops})
		if i == 1 {
			out = append(out, api.Change{Seq: 7}) // a stub
		}
	}
	return out
}

// TestUnpackPushBlocks: changes continued over several blocks come back
// whole and in order, as the per-block decoding joined them; a stub stays
// a stub; the bound counts the ops of every block, at it and one past it.
func TestUnpackPushBlocks(t *testing.T) {
	in := samplePush(t, 11, 4, 50)
	blocks := pushBlocks(t, in, 7)
	out, err := api.UnpackPushBlocks(blocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !samePush(out, in) {
		t.Fatalf("unpacked blocks differ from the changes packed")
	}
	ref, err := unpackBlocksRef(blocks, 0)
	if err != nil || !samePush(out, ref) {
		t.Fatalf("differs from the per-block decoding: %v", err)
	}
	if _, err := api.UnpackPushBlocks(blocks, 4*50); err != nil {
		t.Fatalf("at the bound: %v", err)
	}
	if _, err := api.UnpackPushBlocks(blocks, 4*50-1); !errors.Is(err, api.ErrPacked) {
		t.Fatalf("one op past the bound: %v", err)
	}
	// A bad block is named in the error.
	bad := append([][]byte{}, blocks...)
	bad[3] = bad[3][:len(bad[3])-1]
	if _, err := api.UnpackPushBlocks(bad, 0); !errors.Is(err, api.ErrPacked) || err.Error()[:15] != "packed block 3:" {
		t.Fatalf("truncated block 3: %v", err)
	}
}

// FuzzUnpackPushBlocks: for blocks cut from the input at the offsets its
// first bytes name, UnpackPushBlocks never panics, refuses only with
// ErrPacked, and agrees with the per-block decoding joined
// (unpackBlocksRef), bound included.
//
//	go test -run '^$' -fuzz FuzzUnpackPushBlocks -fuzztime 30s ./api
func FuzzUnpackPushBlocks(f *testing.F) {
	for _, seed := range []uint64{1, 2} {
		blocks := pushBlocks(f, samplePush(f, seed, 3, 9), 4)
		var in []byte
		in = append(in, byte(len(blocks)))
		for _, b := range blocks {
			in = append(in, byte(len(b)))
		}
		for _, b := range blocks {
			in = append(in, b...)
		}
		f.Add(in, uint16(0))
		f.Add(in, uint16(20))
	}
	f.Fuzz(func(t *testing.T, in []byte, bound uint16) {
		if len(in) == 0 {
			return
		}
		n := int(in[0]) % 8
		in = in[1:]
		var blocks [][]byte
		for i := 0; i < n && len(in) > 0; i++ {
			k := int(in[0])
			in = in[1:]
			if i == n-1 || k > len(in) {
				k = len(in)
			}
			blocks = append(blocks, in[:k])
			in = in[k:]
		}
		out, err := api.UnpackPushBlocks(blocks, int(bound))
		ref, refErr := unpackBlocksRef(blocks, int(bound))
		if err != nil {
			if !errors.Is(err, api.ErrPacked) {
				t.Fatalf("error does not wrap ErrPacked: %v", err)
			}
			if refErr == nil {
				t.Fatalf("refused %v; the per-block decoding accepts", err)
			}
			return
		}
		if refErr != nil {
			t.Fatalf("accepted; the per-block decoding refuses: %v", refErr)
		}
		if !samePush(out, ref) {
			t.Fatalf("differs from the per-block decoding")
		}
	})
}

// BenchmarkUnpackPushBlocks decodes a push of 8 changes × 100 records ×
// 30 fields (BenchmarkPackPush8's) sent as the SDK sends it, in blocks of
// 2,400 ops, so that each change continues over two blocks: the blocks
// decoded into one array (UnpackPushBlocks), and per block then joined
// (the server before, unpackBlocksRef). One iteration is one push of
// 24,000 ops.
func BenchmarkUnpackPushBlocks(b *testing.B) {
	rep := crdt.ReplicaID{3, 15: 0xee}
	t := crdt.MakeTimestamp(1795253400000, 0)
	chs := make([]api.Change, 8)
	for c := range chs {
		chs[c].Seq = uint64(c + 1)
		for r := range 100 {
			rec := crdt.NewRecord("wigan", "bench_rows", fmt.Sprintf("%032x", (c*100+r)*7919))
			for f := range 30 {
				t++
				chs[c].Ops = append(chs[c].Ops, rec.Write(crdt.OpID{Time: t, Replica: rep}, fmt.Sprintf("f%02d", f), crdt.MustValue(fmt.Sprintf("%06dvvvvvvvvvvvvvv", r))))
			}
		}
	}
	blocks := pushBlocks(b, chs, 2400)
	for _, c := range []struct {
		name   string
		unpack func([][]byte, int) ([]api.Change, error)
	}{{"blocks", api.UnpackPushBlocks}, {"per-block-joined", unpackBlocksRef}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.unpack(blocks, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUnpackPackedMarksValidated: UnpackPacked sets Changes from Packed
// and says its ops are validated while Changes is the slice it set; not
// for a copy, a shortened slice, a request decoded from msgpack, or one
// without Packed. The mark is not on the wire.
func TestUnpackPackedMarksValidated(t *testing.T) {
	in := samplePush(t, 13, 3, 20)
	req := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: crdt.ReplicaID{1, 15: 1}, Packed: pushBlocks(t, in, 9)}
	if req.OpsValidated() {
		t.Fatal("validated before unpacking")
	}
	if err := req.UnpackPacked(0); err != nil {
		t.Fatal(err)
	}
	if req.Packed != nil || !samePush(req.Changes, in) || !req.OpsValidated() {
		t.Fatalf("packed %v, same changes %v, validated %v", req.Packed != nil, samePush(req.Changes, in), req.OpsValidated())
	}
	plain := &api.SyncRequest{Protocol: req.Protocol, Replica: req.Replica, Changes: req.Changes}
	a, err := msgpack.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := msgpack.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the mark changes the request's encoding")
	}
	var back api.SyncRequest
	if err := msgpack.Unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	if back.OpsValidated() {
		t.Fatal("a request decoded from msgpack says its ops are validated")
	}
	set := req.Changes
	req.Changes = append([]api.Change(nil), set...)
	if req.OpsValidated() {
		t.Fatal("a copy of Changes says validated")
	}
	req.Changes = set[:len(set)-1]
	if req.OpsValidated() {
		t.Fatal("a shortened Changes says validated")
	}
	none := &api.SyncRequest{Changes: set}
	if err := none.UnpackPacked(0); err != nil || none.OpsValidated() {
		t.Fatalf("no Packed: %v, validated %v", err, none.OpsValidated())
	}
}
