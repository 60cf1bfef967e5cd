package client

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// BenchmarkBatchCreate is the write phase of issue 17's push-then-pull
// workload inside the SDK: durable batches creating 100 records of 30
// string fields of 20 bytes (e2e.BenchmarkSDKPushPull times 10,000 such
// records end to end). Field values are built before the timed part.
//
//	go test -run '^$' -bench '^BenchmarkBatchCreate$' -benchtime 20x ./client-sdk
func BenchmarkBatchCreate(b *testing.B) {
	const perBatch, fields = 100, 30
	var f strings.Builder
	for i := range fields {
		if i > 0 {
			f.WriteString(",")
		}
		fmt.Fprintf(&f, `{"name": "f%02d", "type": "string", "max_length": 100}`, i)
	}
	sc, err := schema.Default().Extend([]byte(fmt.Sprintf(`{"version": %d, "name": "bench", "collections": [{"name": "bench_rows", "fields": [%s]}]}`,
		schema.Default().Version()+1, f.String())))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r, err := Open(ctx, Options{Dir: b.TempDir(), EncryptionKey: testKey, Validator: sc})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	rows := make([]map[string]any, perBatch)
	for i := range rows {
		rows[i] = make(map[string]any, fields)
		for k := range fields {
			rows[i][fmt.Sprintf("f%02d", k)] = fmt.Sprintf("%06d%s", i, strings.Repeat("v", 14))
		}
	}
	cpu0 := cpuTime()
	for b.Loop() {
		err := r.Batch(ctx, func(bt *Batch) error {
			for _, row := range rows {
				if _, err := bt.Create(Ref{Team: "wigan", Collection: "bench_rows"}, row); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(perBatch*b.N)/b.Elapsed().Seconds(), "rec/s")
	// CPU time of the whole process (Badger's goroutines included) per
	// record: steadier than wall time on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(perBatch*b.N), "cpu-µs/rec")
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestChangeCodecMatchesMsgpack: encodeChangeMsgpack writes the bytes
// msgpack's encoder writes for the same api.Change (the outbox's form up
// to layout 2), and decodeChange reads them, msgpack's own and the packed
// form encodeChange writes now, to the same change.
func TestChangeCodecMatchesMsgpack(t *testing.T) {
	rep := crdt.ReplicaID{1, 2, 3}
	var ops []crdt.Op
	for i := range 40 {
		op := crdt.Op{ID: crdt.OpID{Time: crdt.Timestamp(1000 + i), Replica: rep}, Team: "wigan", Collection: "people",
			Record: "p1", Field: fmt.Sprint("f", i%7), Kind: crdt.KindWrite, Value: crdt.MustValue(strings.Repeat("x", i))}
		if i%3 == 0 {
			op.Pred = []crdt.OpID{{Time: 5, Replica: rep}}
		}
		if i%5 == 0 {
			op.Kind, op.Value = crdt.KindRemove, nil
		}
		if i%4 == 1 {
			op.Record = NewID()
		}
		ops = append(ops, op)
	}
	for _, seq := range []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 32, 1<<64 - 1} {
		for _, n := range []int{1, 2, 40} {
			c := &api.Change{Seq: seq, Ops: ops[:n]}
			old, err := encodeChangeMsgpack(c)
			if err != nil {
				t.Fatal(err)
			}
			want, err := marshalCompact(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(old, want) {
				t.Fatalf("seq %d, %d ops: encodeChangeMsgpack\n% x\nmsgpack\n% x", seq, n, old, want)
			}
			packed, err := encodeChange(c)
			if err != nil {
				t.Fatal(err)
			}
			if packed[0] != packedEntry || len(packed) >= len(old) && n > 1 {
				t.Fatalf("seq %d, %d ops: packed entry of %d bytes, msgpack %d", seq, n, len(packed), len(old))
			}
			for _, b := range [][]byte{old, packed} {
				back, err := decodeChange(b)
				if err != nil || !reflect.DeepEqual(back, c) {
					t.Fatalf("seq %d, %d ops: decoded %+v, %v", seq, n, back, err)
				}
				if k, err := entryOps(b); err != nil || k != n {
					t.Fatalf("seq %d: entryOps %d, %v; want %d", seq, k, err, n)
				}
			}
		}
	}
	// An empty change (set aside, stubs), both as nil and as an empty list.
	for _, c := range []*api.Change{{Seq: 9}, {Seq: 9, Ops: []crdt.Op{}}} {
		want, _ := marshalCompact(c)
		for _, b := range [][]byte{want, must(encodeChangeMsgpack(c)), must(encodeChange(c))} {
			back, err := decodeChange(b)
			if err != nil || back.Seq != 9 || len(back.Ops) != 0 {
				t.Fatalf("empty change % x: %+v, %v", b, back, err)
			}
		}
	}
	// A cut or garbled packed entry is an error, never a shorter change.
	full := must(encodeChange(&api.Change{Seq: 3, Ops: ops}))
	for _, b := range [][]byte{full[:len(full)-1], full[:5], append(slices.Clone(full), 0)} {
		if c, err := decodeChange(b); err == nil {
			t.Fatalf("decoded a damaged entry of %d bytes to %d ops", len(b), len(c.Ops))
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// BenchmarkOutboxEntry encodes and decodes one write group of the
// push-then-pull workload (100 new records x 30 string fields of 20
// bytes: 3,000 ops) in the packed form the outbox stores from layout 3
// and in the msgpack form of layout 2, which every push used to decode
// (sealFrom, loadChanges) only to pack it again for the wire.
//
//	go test -run '^$' -bench '^BenchmarkOutboxEntry$' ./client-sdk
func BenchmarkOutboxEntry(b *testing.B) {
	rep := crdt.ReplicaID{1, 2, 3}
	var ops []crdt.Op
	for r := range 100 {
		id := NewID()
		for f := range 30 {
			ops = append(ops, crdt.Op{ID: crdt.OpID{Time: crdt.Timestamp(1<<40 + r*30 + f), Replica: rep}, Team: "wigan",
				Collection: "bench_rows", Record: id, Field: fmt.Sprintf("f%02d", f), Kind: crdt.KindWrite,
				Value: crdt.MustValue(fmt.Sprintf("%06d%s", r, strings.Repeat("v", 14)))})
		}
	}
	c := &api.Change{Seq: 7, Ops: ops}
	forms := []struct {
		name string
		enc  func(*api.Change) ([]byte, error)
	}{{"packed", encodeChange}, {"msgpack", encodeChangeMsgpack}}
	for _, f := range forms {
		stored := must(f.enc(c))
		b.Run(f.name+"/encode", func(b *testing.B) {
			for b.Loop() {
				if _, err := f.enc(c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(stored)), "bytes")
		})
		b.Run(f.name+"/decode", func(b *testing.B) {
			for b.Loop() {
				if _, err := decodeChange(stored); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-decoded")
		})
	}
}
