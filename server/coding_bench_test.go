package server

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

// codingBodies are sync bodies of BenchmarkSDKPushPull's shape (records of
// 30 fields of 20 bytes), each with its count of
// fields (ops, or record fields for a snapshot), random record IDs from a
// seeded generator: a bootstrap page of
// 1,000 record states, a packed pull page of 10 changes of 100 records,
// and a packed push of 20 such changes.
func codingBodies(tb testing.TB) []struct {
	name   string
	body   []byte
	fields int
} {
	rep := crdt.ReplicaID{9, 15: 0x17}
	t := crdt.MakeTimestamp(1795253400000, 0)
	rng := rand.New(rand.NewPCG(17, 17)) // record IDs are random, as the SDK's are
	var changes []api.Change
	var states []crdt.RecordBytes
	for c := range 20 {
		ch := api.Change{Seq: uint64(c + 1)}
		for r := range 100 {
			n := c*100 + r
			rec := crdt.NewRecord("wigan-frailty", "bench_rows", fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()))
			for f := range 30 {
				t++
				op := rec.Write(crdt.OpID{Time: t, Replica: rep}, fmt.Sprintf("f%02d", f), crdt.MustValue(fmt.Sprintf("%06dvvvvvvvvvvvvvv", n)))
				if err := rec.Apply(&op); err != nil {
					tb.Fatal(err)
				}
				ch.Ops = append(ch.Ops, op)
			}
			st, err := crdt.MarshalRecord(rec)
			if err != nil {
				tb.Fatal(err)
			}
			states = append(states, st)
		}
		changes = append(changes, ch)
	}
	snap, err := EncodeSyncResponse(&api.SyncResponse{Protocol: 1, Snapshot: states[:1000], Cursor: []byte("cursor")})
	if err != nil {
		tb.Fatal(err)
	}
	var pulled []api.PulledChange
	for _, c := range changes[:10] {
		pulled = append(pulled, api.PulledChange{Author: "ann", Ops: crdt.NewOpsBytes(c.Ops)})
	}
	packed, err := api.PackChanges(pulled)
	if err != nil {
		tb.Fatal(err)
	}
	pull, err := EncodeSyncResponse(&api.SyncResponse{Protocol: 1, Packed: packed, Cursor: []byte("cursor")})
	if err != nil {
		tb.Fatal(err)
	}
	var blocks [][]byte
	for i := range changes {
		b, err := api.PackPush(changes[i : i+1])
		if err != nil {
			tb.Fatal(err)
		}
		blocks = append(blocks, b)
	}
	push, err := msgpack.Marshal(&api.SyncRequest{Protocol: 1, Packed: blocks})
	if err != nil {
		tb.Fatal(err)
	}
	return []struct {
		name   string
		body   []byte
		fields int
	}{{"snapshot", snap, 1000 * 30}, {"packed-pull", pull, 1000 * 30}, {"packed-push", push, 2000 * 30}}
}

// codec is a candidate coding with one encoder and one decoder, reset
// for each body as the server's pooled reply writers and the SDK's pooled
// reply readers are.
type codec struct {
	name  string
	reset func(w io.Writer) io.WriteCloser
	dec   func(r io.Reader) io.Reader
}

// codingCodecs are the candidates: compress/gzip as before, klauspost's
// gzip and zstd at their fast and default levels.
func codingCodecs(tb testing.TB) []codec {
	var out []codec
	for _, l := range []int{1, 6} {
		zw, _ := stdgzip.NewWriterLevel(nil, l)
		zr := new(stdgzip.Reader)
		out = append(out, codec{fmt.Sprintf("stdgzip-%d", l),
			func(w io.Writer) io.WriteCloser { zw.Reset(w); return zw },
			func(r io.Reader) io.Reader { zr.Reset(r); return zr }})
	}
	for _, l := range []int{1, 6} {
		zw, _ := gzip.NewWriterLevel(nil, l)
		zr := new(gzip.Reader)
		out = append(out, codec{fmt.Sprintf("gzip-%d", l),
			func(w io.Writer) io.WriteCloser { zw.Reset(w); return zw },
			func(r io.Reader) io.Reader { zr.Reset(r); return zr }})
	}
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecodeBuffersBelow(0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(zr.Close)
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdReplyWindow), zstd.WithEncoderCRC(true))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, codec{"zstd-" + l.String(),
			func(w io.Writer) io.WriteCloser { zw.Reset(w); return zw },
			func(r io.Reader) io.Reader { _ = zr.Reset(r); return zr }})
	}
	return out
}

// BenchmarkWireCodings: CPU and bytes of each candidate coding on sync
// bodies of the push-then-pull workload, per field (B/field on the wire,
// ns/field to encode or to decode), to pick codings and levels by
// measurement (docs/benchmarks.md "Issue 17, third pass: i17-wire").
//
//	go test -run '^$' -bench '^BenchmarkWireCodings$' -benchtime 20x ./server
func BenchmarkWireCodings(b *testing.B) {
	for _, body := range codingBodies(b) {
		for _, c := range codingCodecs(b) {
			var wire bytes.Buffer
			zw := c.reset(&wire)
			zw.Write(body.body)
			zw.Close()
			b.Run(body.name+"/"+c.name+"/encode", func(b *testing.B) {
				var out bytes.Buffer
				for b.Loop() {
					out.Reset()
					zw := c.reset(&out)
					if _, err := zw.Write(body.body); err != nil {
						b.Fatal(err)
					}
					if err := zw.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(wire.Len())/float64(body.fields), "B/field")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(body.fields), "ns/field")
			})
			b.Run(body.name+"/"+c.name+"/decode", func(b *testing.B) {
				for b.Loop() {
					n, err := io.Copy(io.Discard, c.dec(bytes.NewReader(wire.Bytes())))
					if err != nil || n != int64(len(body.body)) {
						b.Fatalf("%d bytes, %v", n, err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(body.fields), "ns/field")
			})
		}
	}
}
