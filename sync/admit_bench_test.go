package sync

import (
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// BenchmarkAdmitNewRecords is the committer's admission of one change of
// 100 new records × 30 fields (BenchmarkPushRecords' change) with its
// runs merged ahead, over the map-backed view of the admission tests (no
// store): what admission itself costs per op, without the reads.
func BenchmarkAdmitNewRecords(b *testing.B) {
	a := testAdmission()
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	c.Teams = teamSet(c.Teams)
	var seq uint64
	clock := crdt.MakeTimestamp(admitNow.Add(-time.Minute).UnixMilli(), 0)
	ch := pushRecordsChanges(c.Replica, &seq, &clock, 1, nil)[0]
	ch.Seq = 1
	pre := make([]*refusal, len(ch.Ops))
	val := make([]error, len(ch.Ops))
	for j := range ch.Ops {
		if pre[j] = precheck(&c, &ch.Ops[j]); pre[j] != nil {
			b.Fatal(pre[j].detail)
		}
	}
	runs := mergeAhead(a.bounds, &ch, pre, val)
	b.ReportAllocs()
	for b.Loop() {
		v := newFakeView()
		d, err := a.admitChangeRuns(v, &c, &ch, pre, val, runs)
		if err != nil || d.result.Status != api.ChangeApplied || len(d.built) != pushRecPerCh {
			b.Fatalf("%v %+v, %d built", err, d.result, len(d.built))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(ch.Ops)), "ns/field-op")
}
