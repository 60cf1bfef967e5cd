package api_test

import (
	"fmt"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// BenchmarkPackPush8: eight changes, each of 100 new records of 30
// fields of 20-byte values (BenchmarkPackPush's change), packed as one
// push block, as the SDK packs a request of several outbox groups.
func BenchmarkPackPush8(b *testing.B) {
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
	b.ReportAllocs()
	for b.Loop() {
		if _, err := api.PackPush(chs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnpackPush8 decodes BenchmarkPackPush8's block as the server
// does a pushed one (api.UnpackPush).
func BenchmarkUnpackPush8(b *testing.B) {
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
	block, err := api.PackPush(chs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(block)))
	for b.Loop() {
		if _, err := api.UnpackPush(block, 0); err != nil {
			b.Fatal(err)
		}
	}
}
