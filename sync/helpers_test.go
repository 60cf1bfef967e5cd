package sync

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/badger"
	"github.com/doorstep-health/doorstep/store/memory"
)

var (
	seedFlag = flag.Int64("seed", 0, "seed for randomized tests (0: time-based)")
	longFlag = flag.Bool("long", false, "run the long forms of randomized and crash tests")
	// backendFlag picks the store every engine test opens (testKV); the
	// main engine tests run over every backend regardless (backends_test.go).
	backendFlag = flag.String("backend", "badger", "store backend of the engine tests: badger, memory or postgres")
)

// testSeed returns the -seed flag or a fresh seed, and logs it.
func testSeed(t testing.TB) int64 {
	s := *seedFlag
	if s == 0 {
		s = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", s, s)
	return s
}

// fakeWall is a settable wall clock that moves forward 1 ms per reading.
type fakeWall struct {
	mu gosync.Mutex
	t  time.Time
}

func newFakeWall() *fakeWall { return &fakeWall{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)} }

func (w *fakeWall) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = w.t.Add(time.Millisecond)
	return w.t
}

func (w *fakeWall) Advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = w.t.Add(d)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testBackend is the backend testKV opens: the -backend flag, or the one
// a table over backends (runOnBackends) is running.
var (
	testBackendMu gosync.Mutex
	testBackend   string
)

func currentBackend() string {
	testBackendMu.Lock()
	defer testBackendMu.Unlock()
	if testBackend != "" {
		return testBackend
	}
	return *backendFlag
}

// memStores holds the memory stores of the running tests by directory
// name, so that an engine reopened on the same dir finds its data (as it
// would on disk).
var (
	memStoresMu gosync.Mutex
	memStores   = map[string]*memory.Store{}
)

// keepOpen is a store whose Close does not close it: an engine closed and
// reopened on a memory store keeps its data.
type keepOpen struct{ store.KV }

func (keepOpen) Close() error { return nil }

// testKV opens the test backend for dir: Badger in dir, the memory store
// named by dir (created on first use, dropped when the test ends), or a
// PostgreSQL database named by dir (postgresKV). Memory and PostgreSQL
// cap transactions near Badger's small-memory limit, so the engine's split
// paths run on every backend.
func testKV(t testing.TB, dir string) store.KV {
	t.Helper()
	switch b := currentBackend(); b {
	case "badger":
		return badgerKV(t, dir)
	case "memory":
		memStoresMu.Lock()
		defer memStoresMu.Unlock()
		m, ok := memStores[dir]
		if !ok {
			m = memory.New(memory.Options{MaxTxnBytes: 2 << 20})
			memStores[dir] = m
			t.Cleanup(func() {
				memStoresMu.Lock()
				delete(memStores, dir)
				memStoresMu.Unlock()
			})
		}
		return keepOpen{m}
	case "postgres":
		return postgresKV(t, dir)
	default:
		t.Fatalf("unknown -backend %q", b)
		return nil
	}
}

// badgerKV opens Badger in dir whatever the test backend, for the tests of
// Badger-only behaviour (data files, crash recovery, backup load).
func badgerKV(t testing.TB, dir string) *badger.Store {
	t.Helper()
	kv, err := badger.Open(badger.Options{Dir: dir, Logger: quietLogger(), SmallMemory: true})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return kv
}

// openTest opens an engine on a fresh store of the test backend (or
// opts.Store, if set) and closes it at the end of the test.
func openTest(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Store == nil {
		opts.Store = testKV(t, t.TempDir())
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// logPos reads the last log position the engine's store has committed.
func logPos(t testing.TB, e *Engine) uint64 {
	t.Helper()
	var pos uint64
	if err := e.kv.View(context.Background(), func(txn store.Tx) (err error) {
		pos, err = store.GetU64Key(txn, store.KeyLogPos)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return pos
}

// openTestAt is openTest on the test backend's store for dir, so that a
// test can close the engine and open it again on the same data.
func openTestAt(t testing.TB, dir string, opts Options) *Engine {
	t.Helper()
	opts.Store = testKV(t, dir)
	return openTest(t, opts)
}

// device is a simulated tablet: a replica with its own clock, record
// states, an outbox of unacknowledged changes and a pull cursor.
type device struct {
	caller  Caller
	clock   *crdt.Clock
	recs    map[api.RecordRef]*crdt.Record
	pending []crdt.Op
	outbox  []api.Change
	seq     uint64
	cursor  []byte
}

func newDevice(user string, wall func() time.Time, teams ...string) *device {
	return &device{
		caller: Caller{User: user, Replica: crdt.NewReplicaID(), Teams: teams},
		clock:  crdt.NewClock(wall, time.Hour),
		recs:   map[api.RecordRef]*crdt.Record{},
	}
}

func (d *device) rec(team, coll, id string) *crdt.Record {
	ref := api.RecordRef{Team: team, Collection: coll, ID: id}
	r, ok := d.recs[ref]
	if !ok {
		r = crdt.NewRecord(team, coll, id)
		d.recs[ref] = r
	}
	return r
}

func (d *device) nextID() crdt.OpID { return crdt.OpID{Time: d.clock.Now(), Replica: d.caller.Replica} }

// do applies op locally and adds it to the pending change.
func (d *device) do(op crdt.Op) crdt.Op {
	if err := d.rec(op.Team, op.Collection, op.Record).Apply(&op); err != nil {
		panic(err)
	}
	d.pending = append(d.pending, op)
	return op
}

func (d *device) write(team, coll, id, field string, v any) crdt.Op {
	return d.do(d.rec(team, coll, id).Write(d.nextID(), field, crdt.MustValue(v)))
}

func (d *device) add(team, coll, id, field string, v any) crdt.Op {
	return d.do(d.rec(team, coll, id).Add(d.nextID(), field, crdt.MustValue(v)))
}

func (d *device) remove(team, coll, id, field string, v any) crdt.Op {
	return d.do(d.rec(team, coll, id).Remove(d.nextID(), field, crdt.MustValue(v)))
}

func (d *device) appendLog(team, coll, id, field string, v any) crdt.Op {
	return d.do(d.rec(team, coll, id).Append(d.nextID(), field, crdt.MustValue(v)))
}

// commit closes the pending ops into a change in the outbox.
func (d *device) commit() api.Change {
	d.seq++
	ch := api.Change{Seq: d.seq, Ops: d.pending}
	d.pending = nil
	d.outbox = append(d.outbox, ch)
	return ch
}

func (d *device) request() *api.SyncRequest {
	return &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: d.caller.Replica, Clock: d.clock.Now(),
		Changes: slices.Clone(d.outbox), Cursor: d.cursor}
}

// pulledOps decodes a pulled change's ops as a device does, failing t if
// they do not decode or if the served bytes are not exactly the encoding
// of the decoded ops (the wire form of a []crdt.Op the server used to
// re-encode).
func pulledOps(t testing.TB, c api.PulledChange) []crdt.Op {
	t.Helper()
	ops, err := c.Ops.Ops()
	if err != nil {
		t.Fatalf("decode pulled ops: %v", err)
	}
	if len(ops) == 0 {
		t.Fatalf("pulled change by %s has no ops", c.Author)
	}
	if want := crdt.NewOpsBytes(ops); !bytes.Equal(c.Ops, want) {
		t.Fatalf("served ops are not canonical:\n got %x\nwant %x", []byte(c.Ops), []byte(want))
	}
	return ops
}

// receive merges a sync response: acknowledged changes leave the outbox,
// snapshot records and pulled ops merge into the local states.
func (d *device) receive(t testing.TB, resp *api.SyncResponse) {
	t.Helper()
	for _, r := range resp.Results {
		if r.Status == api.ChangeApplied || r.Status == api.ChangeDuplicate {
			d.outbox = slices.DeleteFunc(d.outbox, func(c api.Change) bool { return c.Seq == r.Seq })
		}
		if r.Status == api.ChangeApplied && len(r.Ops) > 0 {
			t.Fatalf("device %s: change %d had ops not merged: %+v", d.caller.User, r.Seq, r.Ops)
		}
	}
	for _, raw := range resp.Snapshot {
		s, err := raw.Record()
		if err != nil {
			t.Fatalf("decode snapshot record: %v", err)
		}
		if err := d.rec(s.Team, s.Collection, s.ID).Merge(s); err != nil {
			t.Fatalf("merge snapshot: %v", err)
		}
	}
	for _, c := range resp.Changes {
		ops := pulledOps(t, c)
		for i := range ops {
			op := ops[i]
			if err := d.rec(op.Team, op.Collection, op.Record).Apply(&op); err != nil {
				t.Fatalf("apply pulled op: %v", err)
			}
		}
	}
	if err := d.clock.Update(resp.Clock); err != nil {
		t.Fatalf("server clock: %v", err)
	}
	d.cursor = resp.Cursor
}

// syncAll syncs until the outbox is empty and nothing more is waiting.
func (d *device) syncAll(t testing.TB, e *Engine) {
	t.Helper()
	for range 10000 {
		resp, err := e.Sync(context.Background(), d.caller, d.request())
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		d.receive(t, resp)
		if len(d.outbox) == 0 && !resp.More {
			return
		}
	}
	t.Fatal("sync did not settle")
}

// encoded returns the canonical encodings of records, by ref.
func encoded(t testing.TB, recs map[api.RecordRef]*crdt.Record) map[api.RecordRef]string {
	t.Helper()
	out := map[api.RecordRef]string{}
	for ref, r := range recs {
		if len(r.Fields) == 0 {
			continue
		}
		b, err := crdt.MarshalRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		out[ref] = string(b)
	}
	return out
}

// serverRecords reads every stored record of the given teams straight from
// the store.
func serverRecords(t testing.TB, e *Engine, teams ...string) map[api.RecordRef]*crdt.Record {
	t.Helper()
	out := map[api.RecordRef]*crdt.Record{}
	for _, team := range teams {
		prefix := store.RecordPrefix(team)
		err := e.kv.View(context.Background(), func(txn store.Tx) error {
			it := txn.Iterate(store.IterOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(prefix); it.Valid(); it.Next() {
				err := itValue(it, func(v []byte) error {
					_, b, err := store.DecodeRecordValue(v)
					if err != nil {
						return err
					}
					r, err := crdt.UnmarshalRecord(b)
					if err != nil {
						return err
					}
					out[api.RecordRef{Team: r.Team, Collection: r.Collection, ID: r.ID}] = r
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func diffStates(a, b map[api.RecordRef]string) string {
	for ref, v := range a {
		if w, ok := b[ref]; !ok {
			return fmt.Sprintf("%v only on the left", ref)
		} else if v != w {
			return fmt.Sprintf("%v differs", ref)
		}
	}
	for ref := range b {
		if _, ok := a[ref]; !ok {
			return fmt.Sprintf("%v only on the right", ref)
		}
	}
	return ""
}

func decodeValue(b []byte, v any) error { return msgpack.Unmarshal(b, v) }
