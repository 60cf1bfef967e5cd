package store

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// benchOps is one change of the issue 17 push: 100 records × 30 fields.
func benchOps() []crdt.Op {
	r := crdt.NewReplicaID()
	var ops []crdt.Op
	tm := crdt.MakeTimestamp(1_700_000_000_000, 0)
	for rec := range 100 {
		for f := range 30 {
			tm++
			ops = append(ops, crdt.Op{ID: crdt.OpID{Time: tm, Replica: r}, Team: "wigan", Collection: "bench_rows",
				Record: fmt.Sprintf("row-1-0-%d", rec), Field: fmt.Sprintf("f%02d", f), Kind: crdt.KindWrite, Value: crdt.MustValue("000000000000000001")})
		}
	}
	return ops
}

// BenchmarkLogOps: packing a change's ops for its log entry (layout 3)
// against encoding them whole (layout 2), and expanding packed ops to
// the bytes a pull serves; per op.
func BenchmarkLogOps(b *testing.B) {
	ops := benchOps()
	b.Run("pack", func(b *testing.B) {
		for b.Loop() {
			_ = PackLogOps(ops)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-op")
	})
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			_ = crdt.NewOpsBytes(ops)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-op")
	})
	p := PackLogOps(ops)
	b.Run("expand", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.OpsBytes(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-op")
	})
	whole := crdt.NewOpsBytes(ops)
	b.Run("clone-whole", func(b *testing.B) { // what a layout 2 pull did
		for b.Loop() {
			_ = bytes.Clone(whole)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-op")
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.Ops(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-op")
	})
}
