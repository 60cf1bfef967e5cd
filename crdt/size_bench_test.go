package crdt

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// editHistory returns n writes of one register by three replicas taking
// turns, each overwriting what it saw (the previous write), as a field
// edited over months is.
func editHistory(n int) []Op {
	reps := []ReplicaID{ann, bea, coord}
	r := NewRecord("wigan", "people", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
	ops := make([]Op, n)
	for i := range ops {
		id := OpID{Time: MakeTimestamp(1_796_000_000_000+int64(i)*1000, 0), Replica: reps[i%3]}
		ops[i] = r.Write(id, "phone", MustValue(fmt.Sprintf("0161 %06d", i%1_000_000)))
		if err := r.Apply(&ops[i]); err != nil {
			panic(err)
		}
	}
	return ops
}

// TestRecordSizeIndependentOfEdits: a record edited 100,000 times by three
// replicas is within 2× of the same record edited once (issue 18), and
// the layout-1 representation was not.
func TestRecordSizeIndependentOfEdits(t *testing.T) {
	sizes := map[int]int{}
	for _, n := range []int{1, 10, 1000, 100_000} {
		r := NewRecord("wigan", "people", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
		ref := newRefRecord()
		for _, op := range editHistory(n) {
			if err := r.Apply(&op); err != nil {
				t.Fatal(err)
			}
			if n <= 1000 {
				_ = ref.Apply(&op)
			}
		}
		b, _ := MarshalRecord(r)
		sizes[n] = len(b)
		v1 := 0
		if n <= 1000 {
			v1 = len(appendV1Record(nil, r.Team, r.Collection, r.ID, ref))
		}
		t.Logf("%7d edits: %d bytes (layout 1: %d)", n, len(b), v1)
	}
	for n, s := range sizes {
		if s > 2*sizes[1] {
			t.Fatalf("%d edits: %d bytes, over 2× the %d of one edit", n, s, sizes[1])
		}
	}
}

// BenchmarkRecordBytesByEdits reports the encoded size of a record after
// d edits of one field by three replicas, and the cost of one more write
// merged into it and the state encoded (what a server or SDK write does).
func BenchmarkRecordBytesByEdits(b *testing.B) {
	for _, n := range []int{1, 10, 1000, 100_000} {
		ops := editHistory(n + 1)
		r := NewRecord("wigan", "people", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
		for i := range ops[:n] {
			if err := r.Apply(&ops[i]); err != nil {
				b.Fatal(err)
			}
		}
		enc, _ := MarshalRecord(r)
		b.Run(fmt.Sprintf("edits=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, err := UnmarshalRecord(enc)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Apply(&ops[n]); err != nil {
					b.Fatal(err)
				}
				if _, err := MarshalRecord(c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(enc)), "record-bytes")
		})
	}
}

// The 100,000-update workload (DESIGN §6, issue 18): 10 replicas update
// 100 records × 30 fields in memory. 750 (record, field) pairs are
// written, picked once at random (seeded); each update is a register
// write by one replica (in turn) to one of them, overwriting what that
// replica has seen. Replicas exchange everything every 50 updates, so
// every field is written concurrently by several replicas and conflicts
// arise; every concurrent value survives.
type workload struct {
	ops     []Op
	records []string
}

func newWorkload(n int) *workload {
	rng := rand.New(rand.NewPCG(18, 750))
	const nRep, nRec, nField, nWritten = 10, 100, 30, 750
	w := &workload{}
	for i := range nRec {
		w.records = append(w.records, fmt.Sprintf("person-%03d", i))
	}
	type pick struct{ rec, field string }
	seen := map[pick]bool{}
	var picks []pick
	for len(picks) < nWritten {
		p := pick{w.records[rng.IntN(nRec)], fmt.Sprintf("field_%02d", rng.IntN(nField))}
		if !seen[p] {
			seen[p] = true
			picks = append(picks, p)
		}
	}
	reps := make([]ReplicaID, nRep)
	views := make([]map[string]*Record, nRep)
	for i := range reps {
		reps[i][0], reps[i][1] = 0x10+byte(i), 0x5a
		views[i] = map[string]*Record{}
		for _, id := range w.records {
			views[i][id] = NewRecord("wigan", "people", id)
		}
	}
	values := []string{"stick", "frame", "wheelchair", "none", "walks unaided"}
	last := 0
	for i := range n {
		rp := i % nRep
		p := picks[rng.IntN(len(picks))]
		id := OpID{Time: MakeTimestamp(1_796_000_000_000+int64(i), 0), Replica: reps[rp]}
		op := views[rp][p.rec].Write(id, p.field, MustValue(values[rng.IntN(len(values))]))
		if err := views[rp][p.rec].Apply(&op); err != nil {
			panic(err)
		}
		w.ops = append(w.ops, op)
		if (i+1)%50 == 0 || i == n-1 {
			for r := range nRep {
				for _, o := range w.ops[last:] {
					if o.ID.Replica != reps[r] {
						_ = views[r][o.Record].Apply(&o)
					}
				}
			}
			last = len(w.ops)
		}
	}
	return w
}

func (w *workload) apply(tb testing.TB) map[string]*Record {
	recs := make(map[string]*Record, len(w.records))
	for _, id := range w.records {
		recs[id] = NewRecord("wigan", "people", id)
	}
	for i := range w.ops {
		if err := recs[w.ops[i].Record].Apply(&w.ops[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return recs
}

// BenchmarkWorkload100k applies the 100,000 updates to empty states one
// op at a time and reports ops/s, the saved state's bytes (every record
// encoded), the live entries it keeps (concurrent values) and its
// conflicts; "layout1" runs the same ops through the layout-1
// representation (v1model_test.go) in the same run.
func BenchmarkWorkload100k(b *testing.B) {
	w := newWorkload(100_000)
	b.Run("state=v2", func(b *testing.B) {
		var recs map[string]*Record
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			recs = w.apply(b)
		}
		b.ReportMetric(float64(len(w.ops)*b.N)/b.Elapsed().Seconds(), "ops/s")
		b.ReportMetric(float64(len(w.ops)*b.N)/(cpuTime()-cpu0).Seconds(), "ops/cpu-s")
		bytes, live, conflicts, fields := 0, 0, 0, 0
		for _, r := range recs {
			enc, _ := MarshalRecord(r)
			bytes += len(enc)
			for _, f := range r.Fields {
				fields++
				live += len(f.Entries)
				if f.Conflict() {
					conflicts++
				}
			}
		}
		b.ReportMetric(float64(bytes), "state-bytes")
		b.ReportMetric(float64(live), "live-entries")
		b.ReportMetric(float64(fields), "fields")
		b.ReportMetric(float64(conflicts), "conflicts")
		b.ReportMetric(float64(bytes)/float64(live), "bytes/live-entry")
	})
	b.Run("state=layout1", func(b *testing.B) {
		var refs map[string]*refRecord
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			refs = map[string]*refRecord{}
			for i := range w.ops {
				op := &w.ops[i]
				if refs[op.Record] == nil {
					refs[op.Record] = newRefRecord()
				}
				if err := refs[op.Record].Apply(op); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(len(w.ops)*b.N)/b.Elapsed().Seconds(), "ops/s")
		b.ReportMetric(float64(len(w.ops)*b.N)/(cpuTime()-cpu0).Seconds(), "ops/cpu-s")
		v1 := 0
		for id, r := range refs {
			v1 += len(appendV1Record(nil, "wigan", "people", id, r))
		}
		b.ReportMetric(float64(v1), "state-bytes")
	})
}

// cpuTime returns the CPU time (user and system) the process has used:
// on a machine shared with other work, ops per CPU second is a steadier
// figure than ops per wall second (it includes the GC's work too).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
