package sync

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// Issue 17's push, at the engine: one device pushes changes of 100
// records × 30 fields of 20 bytes (the SDK's durable write batches of the
// e2e BenchmarkSDKPushPull), 8 changes a push (24,000 ops), to Badger.
const (
	pushRecFields  = 30
	pushRecPerCh   = 100
	pushChPerPush  = 8
	pushOpsPerPush = pushRecFields * pushRecPerCh * pushChPerPush
)

// pushRecordsChanges returns one push of new records (pred nil) or, with
// prev, of one overwrite of every field of prev's records, each naming the
// op it replaces.
func pushRecordsChanges(replica crdt.ReplicaID, seq *uint64, clock *crdt.Timestamp, push int, prev []api.Change) []api.Change {
	value := crdt.MustValue(fmt.Sprintf("%020d", push)[:18])
	out := make([]api.Change, pushChPerPush)
	for c := range out {
		*seq++
		ch := api.Change{Seq: *seq, Ops: make([]crdt.Op, 0, pushRecFields*pushRecPerCh)}
		for r := range pushRecPerCh {
			id := fmt.Sprintf("row-%d-%d-%d", push, c, r)
			for f := range pushRecFields {
				*clock++
				op := crdt.Op{
					ID:   crdt.OpID{Time: *clock, Replica: replica},
					Team: "wigan", Collection: "bench_rows", Record: id, Field: fmt.Sprintf("f%02d", f),
					Kind: crdt.KindWrite, Value: value,
				}
				if prev != nil {
					old := prev[c].Ops[r*pushRecFields+f]
					op.Record, op.Pred = old.Record, []crdt.OpID{old.ID}
				}
				ch.Ops = append(ch.Ops, op)
			}
		}
		out[c] = ch
	}
	return out
}

// BenchmarkPushRecords is one push of 8 changes × 100 records × 30 fields
// through Engine.Push to a durable Badger store: new records, and the
// same records overwritten (every op naming the one it replaces). One
// iteration is one push of 24,000 ops; ns/op-op is per field op.
func BenchmarkPushRecords(b *testing.B) {
	for _, kind := range []string{"new", "overwrite"} {
		b.Run(kind, func(b *testing.B) {
			e := openBench(b, b.TempDir())
			defer e.Close()
			c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			var seq uint64
			clock := crdt.MakeTimestamp(time.Now().UnixMilli()-60_000, 0)
			push := func(chs []api.Change) {
				res, err := e.Push(context.Background(), c, chs)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Status != api.ChangeApplied || len(r.Ops) > 0 {
						b.Fatalf("change %d: %v %v %v", r.Seq, r.Status, r.Code, r.Ops)
					}
				}
			}
			b.ReportAllocs()
			var cpu time.Duration
			i := 0
			for b.Loop() {
				i++
				b.StopTimer()
				chs := pushRecordsChanges(c.Replica, &seq, &clock, i, nil)
				if kind == "overwrite" {
					push(chs)
					chs = pushRecordsChanges(c.Replica, &seq, &clock, i, chs)
				}
				b.StartTimer()
				before := processCPU()
				push(chs)
				cpu += processCPU() - before
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/pushOpsPerPush, "ns/field-op")
			// The process's CPU per field op during the timed pushes
			// (Badger's background work included): steadier than wall
			// time on a shared machine.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/pushOpsPerPush, "cpu-ns/field-op")
		})
	}
}

// processCPU returns the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
