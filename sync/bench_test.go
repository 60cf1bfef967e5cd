package sync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/store"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
)

// Benchmarks. Run: go test -run '^$' -bench . -benchmem ./sync
//
// Every benchmark writes durably (SyncWrites) to a directory on the same
// disk as the test's temp dir. fieldops/s counts field ops.

const benchOpsPerChange = 100

var benchValue = crdt.MustValue("a typical short answer") // ~23 bytes, like most form fields

// benchChange is a 100-op change: one record (a visit) with 100 fields.
func benchChange(replica crdt.ReplicaID, seq uint64, base crdt.Timestamp, team string) api.Change {
	ch := api.Change{Seq: seq, Ops: make([]crdt.Op, benchOpsPerChange)}
	id := fmt.Sprintf("visit-%s-%d", replica.String()[:8], seq)
	for k := range ch.Ops {
		ch.Ops[k] = crdt.Op{
			ID:   crdt.OpID{Time: base + crdt.Timestamp(seq*benchOpsPerChange+uint64(k)), Replica: replica},
			Team: team, Collection: "contacts", Record: id, Field: fmt.Sprintf("field_%03d", k),
			Kind: crdt.KindWrite, Value: benchValue,
		}
	}
	return ch
}

// benchKV opens the benchmark's store: Badger with its production memory
// settings, or the memory store with -backend memory.
func benchKV(b *testing.B, dir string) store.KV {
	b.Helper()
	if currentBackend() == "memory" {
		return testKV(b, dir)
	}
	kv, err := storebadger.Open(storebadger.Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return kv
}

func openBench(b *testing.B, dir string) *Engine {
	b.Helper()
	e, err := Open(context.Background(), Options{Store: benchKV(b, dir), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkIngest pushes 100-op changes from P concurrent devices; one
// iteration is one change.
func BenchmarkIngest(b *testing.B) {
	for _, p := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("pushers=%d", p), func(b *testing.B) {
			e := openBench(b, b.TempDir())
			defer e.Close()
			base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
			var next atomic.Int64
			var wg gosync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range p {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
					for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
						res, err := e.Push(context.Background(), c, []api.Change{benchChange(c.Replica, seq, base, "wigan")})
						if err != nil || res[0].Status != api.ChangeApplied {
							b.Errorf("push: %v %+v", err, res)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.ReportMetric(float64(b.N*benchOpsPerChange)/el.Seconds(), "fieldops/s")
		})
	}
}

// BenchmarkBadgerRaw is Badger's own durable batched write on the same
// disk, with the store's options: P writers each commit transactions of 100
// values of the size of one encoded op (Badger groups concurrent commits
// into one fsync itself). One iteration is one transaction, so fieldops/s
// compares directly with BenchmarkIngest.
func BenchmarkBadgerRaw(b *testing.B) {
	op := benchChange(crdt.NewReplicaID(), 1, 1, "wigan").Ops[0]
	enc, err := crdt.MarshalOp(&op)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", p), func(b *testing.B) {
			db, err := storebadger.Open(storebadger.Options{Dir: b.TempDir(), Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var next atomic.Int64
			var wg gosync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range p {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						err := db.Update(context.Background(), func(txn store.Tx) error {
							for k := range benchOpsPerChange {
								key := fmt.Appendf(nil, "raw/%02d/%012d/%03d", w, n, k)
								if err := txn.Set(key, enc); err != nil {
									return err
								}
							}
							return nil
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.ReportMetric(float64(b.N*benchOpsPerChange)/el.Seconds(), "fieldops/s")
			b.ReportMetric(float64(b.N*benchOpsPerChange*len(enc))/el.Seconds()/1e6, "MB/s")
		})
	}
}

// benchStores holds stores built once per test binary run for the read
// benchmarks; TestMain removes them.
var benchStores struct {
	gosync.Mutex
	dirs map[string]string
}

// buildPeopleStore returns a directory holding `people` records of team
// wigan with `fields` register fields each, pushed one record per change,
// built once per run.
func buildPeopleStore(b *testing.B, people, fields int) string {
	benchStores.Lock()
	defer benchStores.Unlock()
	name := fmt.Sprintf("people-%d-%d", people, fields)
	if dir, ok := benchStores.dirs[name]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "doorstep-bench-")
	if err != nil {
		b.Fatal(err)
	}
	if benchStores.dirs == nil {
		benchStores.dirs = map[string]string{}
	}
	benchStores.dirs[name] = dir
	e := openBench(b, dir)
	defer e.Close()
	start := time.Now()
	const pushers = 8
	var wg gosync.WaitGroup
	base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			seq := uint64(0)
			for i := p; i < people; i += pushers {
				seq++
				ch := api.Change{Seq: seq, Ops: make([]crdt.Op, fields)}
				for k := range ch.Ops {
					ch.Ops[k] = crdt.Op{
						ID:   crdt.OpID{Time: base + crdt.Timestamp(uint64(i*fields+k)), Replica: c.Replica},
						Team: "wigan", Collection: "people", Record: fmt.Sprintf("person-%05d", i), Field: fmt.Sprintf("field_%03d", k),
						Kind: crdt.KindWrite, Value: benchValue,
					}
				}
				if _, err := e.Push(context.Background(), c, []api.Change{ch}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("built %d people x %d fields (%d ops) in %s", people, fields, people*fields, time.Since(start).Round(time.Millisecond))
	return dir
}

// BenchmarkBootstrap is a new tablet joining a team of 5,000 people with
// 200 fields each: snapshot pages of the default size until it follows
// the log. One iteration is one full bootstrap.
func BenchmarkBootstrap(b *testing.B) {
	dir := buildPeopleStore(b, 5000, 200)
	e := openBench(b, dir)
	defer e.Close()
	c := Caller{User: "new", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	b.ResetTimer()
	var records, pages int
	for range b.N {
		_, r, p := pullToHead(b, e, c, nil)
		records += r
		pages += p
	}
	if records != 5000*b.N {
		b.Fatalf("bootstrap returned %d records, want %d", records, 5000*b.N)
	}
	b.ReportMetric(float64(pages)/float64(b.N), "pages/op")
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkPull follows the log: 2,000 changes of 10 ops, pulled from the
// start in default pages. One iteration pulls all 20,000 ops.
func BenchmarkPull(b *testing.B) {
	e := openBench(b, b.TempDir())
	defer e.Close()
	d := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
	var batch []api.Change
	for seq := uint64(1); seq <= 2000; seq++ {
		ch := benchChange(d.Replica, seq, base, "wigan")
		ch.Ops = ch.Ops[:10]
		batch = append(batch, ch)
		if len(batch) == 100 {
			if _, err := e.Push(context.Background(), d, batch); err != nil {
				b.Fatal(err)
			}
			batch = nil
		}
	}
	c := Caller{User: "x", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	start := cursor{mode: modeLog, teams: teamsHash(c.Teams)}.encode()
	b.ResetTimer()
	ops := 0
	for range b.N {
		n, _, _ := pullToHead(b, e, c, start)
		ops += n
	}
	if ops != 20000*b.N {
		b.Fatalf("pulled %d ops, want %d", ops, 20000*b.N)
	}
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "fieldops/s")
}

// BenchmarkPushAtHistory measures one durable 100-op push (one pusher) on
// stores already holding 10k and 1M ops: the cost must not grow with
// history.
func BenchmarkPushAtHistory(b *testing.B) {
	for _, size := range []struct {
		name           string
		people, fields int
	}{{"ops=10k", 50, 200}, {"ops=1M", 5000, 200}} {
		b.Run(size.name, func(b *testing.B) {
			dir := buildPeopleStore(b, size.people, size.fields)
			e := openBench(b, dir)
			defer e.Close()
			c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
			b.ResetTimer()
			for i := range b.N {
				ch := benchChange(c.Replica, uint64(i+1), base, "wigan")
				// Touch an existing person too, as a visit does.
				ch.Ops[0].Collection, ch.Ops[0].Record = "people", fmt.Sprintf("person-%05d", i%size.people)
				ch.Ops[0].Field = "last_visit"
				res, err := e.Push(context.Background(), c, []api.Change{ch})
				if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
					b.Fatalf("push: %v %+v", err, res)
				}
			}
		})
	}
}

// BenchmarkPullAtHistory is the pull side of a reconnect on stores already
// holding 10k and 1M ops: a colleague pushes 2,000 ops (20 changes of 100,
// outside the timer), then the device, whose cursor is at the head of the
// log from before, pulls them in default pages. The cost must not grow
// with history.
func BenchmarkPullAtHistory(b *testing.B) {
	for _, size := range []struct {
		name           string
		people, fields int
	}{{"ops=10k", 50, 200}, {"ops=1M", 5000, 200}} {
		b.Run(size.name, func(b *testing.B) {
			dir := buildPeopleStore(b, size.people, size.fields)
			e := openBench(b, dir)
			defer e.Close()
			other := Caller{User: "o", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			dev := Caller{User: "d", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
			var oseq uint64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				cur := cursor{mode: modeLog, pos: logPos(b, e), teams: teamsHash(teamSet(dev.Teams))}.encode()
				var others []api.Change
				for range 20 {
					oseq++
					others = append(others, benchChange(other.Replica, oseq, base, "wigan"))
				}
				if _, err := e.Push(context.Background(), other, others); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				n, _, _ := pullToHead(b, e, dev, cur)
				if n != 2000 {
					b.Fatalf("pulled %d ops, want 2000", n)
				}
			}
		})
	}
}

// BenchmarkOverwriteDepth measures one durable 10-op change that
// overwrites every field of a record whose fields have each already been
// overwritten `depth` times. With crdt state version 2 a record keeps its
// live values and a causal context, not the IDs it overwrote, so the
// stored record, and the cost of reading and rewriting it on every push,
// no longer grow with the number of edits (under layout 1 it was 738 B,
// 26.5 KB and 260.5 KB at depths 1, 100 and 1,000). recordbytes is the
// record's encoded size before the timed pushes.
func BenchmarkOverwriteDepth(b *testing.B) {
	const nfields = 10
	for _, depth := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			e := openBench(b, b.TempDir())
			defer e.Close()
			c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			clock := crdt.NewClock(time.Now, time.Minute)
			var seq uint64
			last := make([]crdt.OpID, nfields)
			next := func() api.Change {
				seq++
				ch := api.Change{Seq: seq, Ops: make([]crdt.Op, nfields)}
				for k := range ch.Ops {
					id := crdt.OpID{Time: clock.Now(), Replica: c.Replica}
					ch.Ops[k] = crdt.Op{ID: id, Team: "wigan", Collection: "people", Record: "deep", Field: fmt.Sprintf("field_%03d", k),
						Kind: crdt.KindWrite, Value: benchValue}
					if !last[k].IsZero() {
						ch.Ops[k].Pred = []crdt.OpID{last[k]}
					}
					last[k] = id
				}
				return ch
			}
			for done := 0; done < depth; {
				var batch []api.Change
				for ; done < depth && len(batch) < 100; done++ {
					batch = append(batch, next())
				}
				if _, err := e.Push(context.Background(), c, batch); err != nil {
					b.Fatal(err)
				}
			}
			rec, err := e.Record(context.Background(), c, api.RecordRef{Team: "wigan", Collection: "people", ID: "deep"})
			if err != nil {
				b.Fatal(err)
			}
			enc, err := crdt.MarshalRecord(rec)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				res, err := e.Push(context.Background(), c, []api.Change{next()})
				if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
					b.Fatalf("push: %v %+v", err, res)
				}
			}
			b.ReportMetric(float64(len(enc)), "recordbytes")
		})
	}
}

// BenchmarkReconnect is a typical reconnect: a device pushes a day's work
// (5 changes of 100 ops) and pulls 2,000 ops others made, in one Sync.
func BenchmarkReconnect(b *testing.B) {
	e := openBench(b, b.TempDir())
	defer e.Close()
	other := Caller{User: "o", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	dev := Caller{User: "d", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
	var oseq, dseq uint64
	cur := []byte(nil)
	// Bootstrap once so the device follows the log.
	resp, err := e.Pull(context.Background(), dev, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	cur = resp.Cursor
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		var others []api.Change
		for range 20 {
			oseq++
			others = append(others, benchChange(other.Replica, oseq, base, "wigan"))
		}
		if _, err := e.Push(context.Background(), other, others); err != nil {
			b.Fatal(err)
		}
		req := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev.Replica, Cursor: cur, PullLimit: MaxPullLimit}
		for range 5 {
			dseq++
			req.Changes = append(req.Changes, benchChange(dev.Replica, dseq, base, "wigan"))
		}
		b.StartTimer()
		pulled := 0
		for {
			resp, err := e.Sync(context.Background(), dev, req)
			if err != nil {
				b.Fatal(err)
			}
			for _, ch := range resp.Changes {
				pulled += ch.Ops.Len()
			}
			cur = resp.Cursor
			if !resp.More {
				break
			}
			req = &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev.Replica, Cursor: cur, PullLimit: MaxPullLimit}
		}
		if pulled < 2000 {
			b.Fatalf("pulled %d ops", pulled)
		}
	}
}

// pullToHead pulls default-size pages from cur until the engine says
// there is no more, and counts the log ops, snapshot records and pages.
func pullToHead(b *testing.B, e *Engine, c Caller, cur []byte) (ops, records, pages int) {
	for {
		resp, err := e.Pull(context.Background(), c, cur, 0)
		if err != nil {
			b.Fatal(err)
		}
		for _, ch := range resp.Changes {
			ops += ch.Ops.Len()
		}
		records += len(resp.Snapshot)
		pages++
		cur = resp.Cursor
		if !resp.More {
			return ops, records, pages
		}
	}
}

func TestMain(m *testing.M) {
	code := pgtest.Main(m) // stops the PostgreSQL cluster of the postgres backend, if one started
	benchStores.Lock()
	for _, dir := range benchStores.dirs {
		os.RemoveAll(filepath.Clean(dir))
	}
	benchStores.Unlock()
	os.Exit(code)
}
