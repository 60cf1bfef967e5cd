package crdt

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// benchRecord returns a record of n fields as a day of home visits leaves
// it: mostly registers, some overwritten and some in conflict, a few sets
// and logs.
func benchRecord(n int) *Record {
	r := NewRecord("wigan", "people", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
	ms := int64(1_795_000_000_000)
	next := func(rep ReplicaID) OpID { ms++; return OpID{Time: MakeTimestamp(ms, 0), Replica: rep} }
	for i := range n {
		name := fmt.Sprintf("field_%03d", i)
		var ops []Op
		switch i % 10 {
		case 7:
			ops = append(ops, r.Add(next(ann), name, MustValue("mobility")), r.Add(next(bea), name, MustValue("money")))
		case 8:
			ops = append(ops, r.Append(next(ann), name, MustValue("Visited; Mrs Jones well, walking with a frame.")))
			ops = append(ops, r.Append(next(bea), name, MustValue("Phoned: GP appointment booked for Tuesday.")))
		default:
			ops = append(ops, r.Write(next(ann), name, MustValue(fmt.Sprintf("value %d", i))))
		}
		for j := range ops {
			if err := r.Apply(&ops[j]); err != nil {
				panic(err)
			}
		}
		if i%10 < 3 { // overwritten once
			op := r.Write(next(bea), name, MustValue(i))
			if err := r.Apply(&op); err != nil {
				panic(err)
			}
		}
		if i%10 == 0 { // and in conflict
			op := r.Write(next(coord), name, MustValue("concurrent"))
			op.Pred = nil
			if err := r.Apply(&op); err != nil {
				panic(err)
			}
		}
	}
	return r
}

// typicalOp is a register write as a tablet sends it: a UUID record, a short
// text value, overwriting the one value it saw.
func typicalOp() Op {
	return Op{
		ID:         OpID{Time: MakeTimestamp(1_795_000_000_123, 0), Replica: ReplicaID{0x3f, 0x2a, 0x91, 0x07, 0xc4, 0x5e, 0x11, 0xd0, 0x8b, 0x6a, 0x2f, 0x90, 0x1c, 0x77, 0xe3, 0x05}},
		Team:       "wigan-frailty",
		Collection: "people",
		Record:     "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		Field:      "mobility",
		Kind:       KindWrite,
		Value:      MustValue("walking frame"),
		Pred:       []OpID{{Time: MakeTimestamp(1_795_000_000_000, 2), Replica: ReplicaID{0x9c, 0x01, 0x44, 0x7d, 0x2e, 0x80, 0x4f, 0x12, 0xa5, 0x3b, 0x6c, 0xd8, 0x0e, 0x91, 0x27, 0x4a}}},
	}
}

// benchOps returns n ops made against r in turn, as one tablet would: mostly
// register writes overwriting what it saw, some set adds and log appends.
// r is left as it was.
func benchOps(r *Record, n int) []Op {
	r = r.Clone()
	ops := make([]Op, n)
	ms := int64(1_796_000_000_000)
	names := r.FieldNames()
	for i := range ops {
		ms++
		id := OpID{Time: MakeTimestamp(ms, 0), Replica: ann}
		name := names[i%len(names)]
		switch r.Field(name).Type {
		case Set:
			ops[i] = r.Add(id, name, MustValue(fmt.Sprintf("need %d", i%7)))
		case Log:
			ops[i] = r.Append(id, name, MustValue("Phoned; no answer."))
		default:
			ops[i] = r.Write(id, name, MustValue(fmt.Sprintf("value %d", i)))
		}
		if err := r.Apply(&ops[i]); err != nil {
			panic(err)
		}
	}
	return ops
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkApplyOp applies ops one at a time to a 200-field record.
func BenchmarkApplyOp(b *testing.B) {
	base := benchRecord(200)
	ops := benchOps(base, 4096)
	var r *Record
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if i%len(ops) == 0 {
			b.StopTimer()
			r = base.Clone()
			b.StartTimer()
		}
		if err := r.Apply(&ops[i%len(ops)]); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "ops/s")
}

// BenchmarkMerge200 merges two diverged states of a 200-field record.
func BenchmarkMerge200(b *testing.B) {
	base := benchRecord(200)
	x, y := base.Clone(), base.Clone()
	for _, op := range benchOps(x, 50) {
		_ = x.Apply(&op)
	}
	for i, op := range benchOps(y, 50) {
		op.ID.Replica = bea // concurrent edits of the same fields
		op.ID.Time += Timestamp(i)
		_ = y.Apply(&op)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		m := x.Clone()
		b.StartTimer()
		if err := m.Merge(y); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "merges/s")
}

func BenchmarkMarshalOp(b *testing.B) {
	op := typicalOp()
	enc, _ := MarshalOp(&op)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalOp(&op); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "wire-bytes/op")
	reportRate(b, "ops/s")
}

func BenchmarkUnmarshalOp(b *testing.B) {
	op := typicalOp()
	enc, _ := MarshalOp(&op)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalOp(enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "wire-bytes/op")
	reportRate(b, "ops/s")
}

func BenchmarkMarshalRecord200(b *testing.B) {
	r := benchRecord(200)
	enc, _ := MarshalRecord(r)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalRecord(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "wire-bytes/record")
}

func BenchmarkUnmarshalRecord200(b *testing.B) {
	enc, _ := MarshalRecord(benchRecord(200))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalRecord(enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "wire-bytes/record")
}

func BenchmarkCheckLimits(b *testing.B) {
	enc, _ := MarshalRecord(benchRecord(200))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckLimits(enc, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}

// jsonOp is the typical op as JSON would carry it: the same short keys,
// IDs as hex strings of their 24-byte form, the value as JSON.
type jsonOp struct {
	ID         string          `json:"i"`
	Team       string          `json:"t"`
	Collection string          `json:"c"`
	Record     string          `json:"r"`
	Field      string          `json:"f"`
	Kind       uint8           `json:"k"`
	Value      json.RawMessage `json:"v,omitempty"`
	Pred       []string        `json:"p,omitempty"`
}

// BenchmarkOpSizeVsJSON reports the wire size of the typical field op in
// msgpack and as the equivalent JSON, and the JSON encoding's speed.
func BenchmarkOpSizeVsJSON(b *testing.B) {
	op := typicalOp()
	mp, _ := MarshalOp(&op)
	var s string
	_ = msgpack.Unmarshal(op.Value, &s)
	val, _ := json.Marshal(s)
	j := jsonOp{ID: hex.EncodeToString(op.ID.AppendBinary(nil)), Team: op.Team, Collection: op.Collection,
		Record: op.Record, Field: op.Field, Kind: uint8(op.Kind), Value: val}
	for _, p := range op.Pred {
		j.Pred = append(j.Pred, hex.EncodeToString(p.AppendBinary(nil)))
	}
	js, _ := json.Marshal(j)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(j); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(mp)), "msgpack-bytes")
	b.ReportMetric(float64(len(js)), "json-bytes")
	b.ReportMetric(float64(len(mp))/float64(len(js)), "msgpack/json")
}

// The issue 17 per-op benchmarks: the shape of BenchmarkSDKPushPull (e2e),
// 100 records of 30 fields, each a 20-byte string, written by one tablet
// record after record, as one pushed change carries them.
const (
	pushRecords = 100
	pushFields  = 30
)

// pushNames are the benchmark's field names, "f00" … "f29".
var pushNames = func() []string {
	names := make([]string, pushFields)
	for i := range names {
		names[i] = fmt.Sprintf("f%02d", i)
	}
	return names
}()

// pushOps returns the ops that create the benchmark's 100 records, and the
// records' IDs. The first op has time ms.
func pushOps(ms int64) ([]Op, []string) {
	ops := make([]Op, 0, pushRecords*pushFields)
	ids := make([]string, pushRecords)
	for r := range pushRecords {
		ids[r] = fmt.Sprintf("0f1e2d3c-4b5a-6978-8796-%012d", r)
		rec := NewRecord("team-bench", "bench_rows", ids[r])
		for _, name := range pushNames {
			id := OpID{Time: MakeTimestamp(ms, 0), Replica: ann}
			ms++
			ops = append(ops, rec.Write(id, name, MustValue(fmt.Sprintf("%06d%s", r, "vvvvvvvvvvvvvv"))))
		}
	}
	return ops, ids
}

// applyPush merges ops (30 a record, record after record) into recs
// through one Batch per record, as the server's commit and the SDK do.
func applyPush(b *testing.B, recs []*Record, ops []Op) {
	for r, rec := range recs {
		bt := NewBatch(rec)
		for i := r * pushFields; i < (r+1)*pushFields; i++ {
			if err := bt.Add(&ops[i]); err != nil {
				b.Fatal(err)
			}
		}
		bt.Flush()
	}
}

func reportPerOp(b *testing.B, opsPerIter int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(opsPerIter), "ns/crdt-op")
}

// cpuMeter reports the process's CPU time per iteration (GC included) as
// "cpu-ns/op": on a loaded machine, wall time per op also counts the time
// the benchmark waited for a core.
type cpuMeter struct{ start int64 }

func startCPU(b *testing.B) *cpuMeter {
	b.ReportAllocs()
	return &cpuMeter{start: processCPU()}
}

func (m *cpuMeter) report(b *testing.B) {
	if m.start > 0 {
		b.ReportMetric(float64(processCPU()-m.start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkPushOpsDecode decodes a change of 3,000 ops (100 new records of
// 30 fields) from its OpsBytes, as the server does with a push and the
// SDK with its outbox and with pulled changes.
func BenchmarkPushOpsDecode(b *testing.B) {
	ops, _ := pushOps(1_796_000_000_000)
	enc := NewOpsBytes(ops)
	b.SetBytes(int64(len(enc)))
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := enc.Ops(); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
	reportPerOp(b, len(ops))
}

// BenchmarkPushBatchNew merges the 3,000 ops into 100 new records, one
// Batch each.
func BenchmarkPushBatchNew(b *testing.B) {
	ops, ids := pushOps(1_796_000_000_000)
	recs := make([]*Record, pushRecords)
	cpu := startCPU(b)
	for b.Loop() {
		for r := range recs {
			recs[r] = NewRecord("team-bench", "bench_rows", ids[r])
		}
		applyPush(b, recs, ops)
	}
	cpu.report(b)
	reportPerOp(b, len(ops))
}

// BenchmarkPushBatchExisting merges 3,000 overwriting writes (each naming
// the value it saw) into the 100 records the first change created.
func BenchmarkPushBatchExisting(b *testing.B) {
	first, ids := pushOps(1_796_000_000_000)
	base := make([]*Record, pushRecords)
	for r := range base {
		base[r] = NewRecord("team-bench", "bench_rows", ids[r])
	}
	applyPush(b, base, first)
	ops := make([]Op, 0, len(first))
	ms := int64(1_797_000_000_000)
	for r, rec := range base {
		for _, name := range pushNames {
			ops = append(ops, rec.Write(OpID{Time: MakeTimestamp(ms, 0), Replica: ann}, name, MustValue(fmt.Sprintf("%06d%s", r, "wwwwwwwwwwwwww"))))
			ms++
		}
	}
	recs := make([]*Record, pushRecords)
	b.ReportAllocs()
	var cpu int64 // the timed part's only, not the clones'
	for b.Loop() {
		b.StopTimer()
		for r := range recs {
			recs[r] = base[r].Clone()
		}
		b.StartTimer()
		t := processCPU()
		applyPush(b, recs, ops)
		cpu += processCPU() - t
	}
	if cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
	reportPerOp(b, len(ops))
}

// pushRecord returns one record of the benchmark as its first change
// leaves it.
func pushRecord(b *testing.B) *Record {
	ops, ids := pushOps(1_796_000_000_000)
	rec := NewRecord("team-bench", "bench_rows", ids[0])
	applyPush(b, []*Record{rec}, ops[:pushFields])
	return rec
}

// BenchmarkMarshalRecord30 encodes one 30-field record of the benchmark.
func BenchmarkMarshalRecord30(b *testing.B) {
	rec := pushRecord(b)
	enc, _ := MarshalRecord(rec)
	b.SetBytes(int64(len(enc)))
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := MarshalRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkUnmarshalRecord30 decodes and validates one 30-field record of
// the benchmark, as a device does with each pulled snapshot record.
func BenchmarkUnmarshalRecord30(b *testing.B) {
	enc, _ := MarshalRecord(pushRecord(b))
	b.SetBytes(int64(len(enc)))
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := UnmarshalRecord(enc); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkPushOpsEncode encodes the 3,000 ops of a change as one list,
// as the SDK does when it seals a change into its outbox and the server
// when it writes a log entry.
func BenchmarkPushOpsEncode(b *testing.B) {
	ops, _ := pushOps(1_796_000_000_000)
	b.SetBytes(int64(len(NewOpsBytes(ops))))
	cpu := startCPU(b)
	for b.Loop() {
		_ = NewOpsBytes(ops)
	}
	cpu.report(b)
	reportPerOp(b, len(ops))
}
