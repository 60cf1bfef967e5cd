package sync

import (
	"context"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// BenchmarkRestate is the server's cost of one device re-sending its
// records after a restore (docs/PROTOCOL.md §13): the 5,000 people × 200
// fields of BenchmarkBootstrap, all of which the server already holds (the
// common case: the backup was recent), in pages of 1,000. One iteration is
// one device's whole restate; it runs in the committer, so pushes wait
// behind it.
func BenchmarkRestate(b *testing.B) {
	dir := buildPeopleStore(b, 5000, 200)
	e := openBench(b, dir)
	old := e.Epoch()
	e.Close()
	st := benchKV(b, dir)
	if _, err := store.NewEpoch(context.Background(), st); err != nil {
		b.Fatal(err)
	}
	st.Close()
	e = openBench(b, dir)
	defer e.Close()
	c := Caller{User: "dev", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	var states []crdt.RecordBytes
	var cur []byte
	for {
		resp, err := e.Pull(context.Background(), c, cur, MaxPullLimit)
		if err != nil {
			b.Fatal(err)
		}
		states = append(states, resp.Snapshot...)
		cur = resp.Cursor
		if !resp.More {
			break
		}
	}
	if len(states) != 5000 {
		b.Fatalf("%d states", len(states))
	}
	b.ResetTimer()
	for range b.N {
		for i := 0; i < len(states); i += 1000 {
			resp, err := e.Sync(context.Background(), c, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: c.Replica, Epoch: old[:], Restate: states[i : i+1000]})
			if err != nil {
				b.Fatal(err)
			}
			if resp.Restated != 0 {
				b.Fatalf("restated %d: the server already holds them", resp.Restated)
			}
		}
	}
	b.ReportMetric(float64(len(states)*b.N)/b.Elapsed().Seconds(), "records/s")
}
