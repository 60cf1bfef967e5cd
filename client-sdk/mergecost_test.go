package client

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// remoteAppends returns n log appends by another replica to one field of
// one record, in descending ID order (the worst order for a sorted insert).
func remoteAppends(n int) []crdt.Op {
	rep := crdt.ReplicaID{0xbe, 0xa0}
	t0 := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).UnixMilli()
	ops := make([]crdt.Op, n)
	for i := range ops {
		ops[i] = crdt.Op{ID: crdt.OpID{Time: crdt.MakeTimestamp(t0+int64(n-i), 0), Replica: rep},
			Team: "wigan", Collection: "people", Record: "p1", Field: "case_notes",
			Kind: crdt.KindAppend, Value: crdt.MustValue("Phoned; no answer.")}
	}
	return ops
}

// allocatedBy returns the bytes allocated (by every goroutine) while fn runs.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// checkNLogN fails t unless cost(4000) is under 8× cost(1000): linear or
// N log N work allocates about 4-5× more for 4× the entries, a quadratic
// merge about 16× (issue 9 item 2). Allocated bytes do not depend on
// machine load, so this is not a timer.
func checkNLogN(t *testing.T, what string, cost func(n int) uint64) {
	t.Helper()
	small, large := cost(1000), cost(4000)
	ratio := float64(large) / float64(small)
	t.Logf("%s: %d B for 1,000 entries, %d B for 4,000: ratio %.1f", what, small, large, ratio)
	if ratio > 8 {
		t.Fatalf("%s: 4× the entries allocated %.1f× the bytes: merge is superlinear (quadratic is ~16×)", what, ratio)
	}
}

// TestPulledAppendsCostNLogN pulls one change of N appends to one field.
func TestPulledAppendsCostNLogN(t *testing.T) {
	checkNLogN(t, "pull", func(n int) uint64 {
		f := newFakeServer(t)
		r := openSynced(t, f, nil)
		mustSync(t, r) // bootstrap: the cursor now follows the log
		f.mu.Lock()
		f.log = append(f.log, api.PulledChange{Author: "bea", Ops: crdt.NewOpsBytes(remoteAppends(n))})
		f.mu.Unlock()
		b := allocatedBy(func() { mustSync(t, r) })
		checkEntries(t, r, n)
		return b
	})
}

// TestApplyRemoteAppendsCostNLogN applies N appends to one field at once.
func TestApplyRemoteAppendsCostNLogN(t *testing.T) {
	checkNLogN(t, "ApplyRemote", func(n int) uint64 {
		r := openTest(t, t.TempDir(), nil)
		ops := remoteAppends(n)
		var err error
		b := allocatedBy(func() { err = r.ApplyRemote(context.Background(), ops) })
		if err != nil {
			t.Fatal(err)
		}
		checkEntries(t, r, n)
		return b
	})
}

func checkEntries(t *testing.T, r *Replica, n int) {
	t.Helper()
	rec, err := r.Get(context.Background(), Ref{Team: "wigan", Collection: "people", ID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rec.State.Field("case_notes").Entries); got != n {
		t.Fatalf("%d entries, want %d", got, n)
	}
}

// BenchmarkApplyRemoteAppends applies N log appends by another replica to
// one field of one record in one ApplyRemote (descending IDs, the worst
// case), durably; the pulled-reply path merges the same way.
func BenchmarkApplyRemoteAppends(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		ops := remoteAppends(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				r, err := Open(context.Background(), Options{Dir: b.TempDir(), EncryptionKey: testKey, NoValidation: true})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := r.ApplyRemote(context.Background(), ops); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				r.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}

// BenchmarkPullAppends is a device pulling one change of N appends to one
// field over loopback HTTP from the in-test server, and storing it.
func BenchmarkPullAppends(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		ops := crdt.NewOpsBytes(remoteAppends(n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				f := newFakeServer(b)
				r, err := Open(context.Background(), Options{Dir: b.TempDir(), EncryptionKey: testKey, NoValidation: true, ServerURL: f.srv.URL})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Login(context.Background(), "ann", "pw"); err != nil {
					b.Fatal(err)
				}
				if _, err := r.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
				f.mu.Lock()
				f.log = append(f.log, api.PulledChange{Author: "bea", Ops: ops})
				f.mu.Unlock()
				b.StartTimer()
				if _, err := r.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				r.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}

// BenchmarkLocalWriteDepth measures one durable local write (Set) to a
// record whose field has already been written d times (by another replica,
// merged in one ApplyRemote), at d = 10 and 10,000: with crdt state
// version 2 the stored record, which every local write reads and rewrites,
// no longer grows with d.
func BenchmarkLocalWriteDepth(b *testing.B) {
	for _, depth := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			ctx := context.Background()
			r, err := Open(ctx, Options{Dir: b.TempDir(), EncryptionKey: testKey, NoValidation: true})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			rep := crdt.ReplicaID{0xbe, 0xa0}
			rec := crdt.NewRecord("wigan", "people", "p1")
			t0 := time.Now().Add(-time.Hour).UnixMilli()
			ops := make([]crdt.Op, depth)
			for i := range ops {
				ops[i] = rec.Write(crdt.OpID{Time: crdt.MakeTimestamp(t0+int64(i), 0), Replica: rep}, "phone", crdt.MustValue(fmt.Sprint(i)))
				if err := rec.Apply(&ops[i]); err != nil {
					b.Fatal(err)
				}
			}
			if err := r.ApplyRemote(ctx, ops); err != nil {
				b.Fatal(err)
			}
			ref := Ref{Team: "wigan", Collection: "people", ID: "p1"}
			st, _ := r.GetState(ctx, ref)
			enc, _ := crdt.MarshalRecord(st)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if err := r.Set(ctx, ref, "phone", fmt.Sprint(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(enc)), "record-bytes")
		})
	}
}
