package sync

import (
	"context"
	"sort"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// bytesKV counts the keys and bytes written through a KV, by key
// prefix (the two bytes before the first '/', e.g. "l/").
type bytesKV struct {
	store.KV
	mu    gosync.Mutex
	count map[string]*written
}

type written struct{ sets, deletes, gets, keyBytes, valueBytes int }

func (c *bytesKV) note(k, v []byte, what byte) {
	p := string(k)
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i+1]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.count[p]
	if w == nil {
		w = &written{}
		c.count[p] = w
	}
	switch what {
	case 's':
		w.sets++
		w.keyBytes += len(k)
		w.valueBytes += len(v)
	case 'd':
		w.deletes++
		w.keyBytes += len(k)
	case 'g':
		w.gets++
	}
}

type bytesTx struct {
	store.Tx
	c *bytesKV
}

func (t bytesTx) Get(k []byte) ([]byte, error) { t.c.note(k, nil, 'g'); return t.Tx.Get(k) }
func (t bytesTx) Set(k, v []byte) error        { t.c.note(k, v, 's'); return t.Tx.Set(k, v) }
func (t bytesTx) Delete(k []byte) error        { t.c.note(k, nil, 'd'); return t.Tx.Delete(k) }
func (t bytesTx) SetWithTTL(k, v []byte, ttl time.Duration) error {
	t.c.note(k, v, 's')
	return t.Tx.SetWithTTL(k, v, ttl)
}

type bytesTxn struct {
	bytesTx
	txn store.Txn
}

func (t bytesTxn) Commit() error { return t.txn.Commit() }
func (t bytesTxn) Discard()      { t.txn.Discard() }

func (c *bytesKV) View(ctx context.Context, fn func(store.Tx) error) error {
	return c.KV.View(ctx, func(tx store.Tx) error { return fn(bytesTx{tx, c}) })
}

func (c *bytesKV) Update(ctx context.Context, fn func(store.Tx) error) error {
	return c.KV.Update(ctx, func(tx store.Tx) error { return fn(bytesTx{tx, c}) })
}

func (c *bytesKV) Begin(ctx context.Context, update bool) (store.Txn, error) {
	t, err := c.KV.Begin(ctx, update)
	if err != nil {
		return nil, err
	}
	return bytesTxn{bytesTx{t, c}, t}, nil
}

// TestPushStoreBytesPerRecord counts what a push of new records (the
// issue 17 workload: 100 records × 30 fields of 20 bytes a change)
// writes to the store per record: keys, key and value bytes by prefix.
// Layout 2 wrote 3,970 bytes a record, 2,787 of them in the log entry;
// layout 3's packed log entry keeps the total under 2,200.
func TestPushStoreBytesPerRecord(t *testing.T) {
	ck := &bytesKV{KV: testKV(t, t.TempDir()), count: map[string]*written{}}
	e, err := Open(context.Background(), Options{Store: ck, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	var seq uint64
	clock := crdt.MakeTimestamp(time.Now().UnixMilli()-60_000, 0)
	ck.mu.Lock()
	ck.count = map[string]*written{}
	ck.mu.Unlock()
	for i := 1; i <= 2; i++ {
		if _, err := e.Push(context.Background(), c, pushRecordsChanges(c.Replica, &seq, &clock, i, nil)); err != nil {
			t.Fatal(err)
		}
	}
	recs := float64(2 * pushChPerPush * pushRecPerCh)
	var prefixes []string
	for p := range ck.count {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	total := 0
	for _, p := range prefixes {
		w := ck.count[p]
		t.Logf("%-3s per record: %.2f sets, %.2f deletes, %.2f gets, %.1f key bytes, %.1f value bytes",
			p, float64(w.sets)/recs, float64(w.deletes)/recs, float64(w.gets)/recs, float64(w.keyBytes)/recs, float64(w.valueBytes)/recs)
		total += w.keyBytes + w.valueBytes
	}
	t.Logf("%.0f bytes written per record", float64(total)/recs)
	if per := float64(total) / recs; per > 2200 {
		t.Errorf("a pushed record writes %.0f bytes to the store, want under 2,200", per)
	}
	if w := ck.count["l/"]; w == nil || float64(w.valueBytes)/recs > 800 {
		t.Errorf("log entries: %+v per %v records, want under 800 bytes a record", w, recs)
	}
	// An overwrite of every field, each op naming the one it replaces:
	// the preds are deltas from their op (layout 2 wrote 24 bytes each).
	first := pushRecordsChanges(c.Replica, &seq, &clock, 3, nil)
	if _, err := e.Push(context.Background(), c, first); err != nil {
		t.Fatal(err)
	}
	ck.mu.Lock()
	ck.count = map[string]*written{}
	ck.mu.Unlock()
	if _, err := e.Push(context.Background(), c, pushRecordsChanges(c.Replica, &seq, &clock, 3, first)); err != nil {
		t.Fatal(err)
	}
	recs = float64(pushChPerPush * pushRecPerCh)
	w := ck.count["l/"]
	t.Logf("overwrite: log entries %.0f bytes a record", float64(w.valueBytes)/recs)
	if per := float64(w.valueBytes) / recs; per > 1000 {
		t.Errorf("an overwrite's log entry: %.0f bytes a record, want under 1,000", per)
	}
}

// TestPullPageBytesCountsServedOps: PageBytes bounds the ops a pulled
// page holds as served (whole, crdt.OpsBytes), not as stored: a packed
// log entry (layout 3) is about a quarter of the ops it serves, and
// counting its stored bytes would let a page hold four times PageBytes.
func TestPullPageBytesCountsServedOps(t *testing.T) {
	const page = 64 << 10
	e, err := Open(context.Background(), Options{Store: testKV(t, t.TempDir()), Logger: quietLogger(), PageBytes: page})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	var seq uint64
	clock := crdt.MakeTimestamp(time.Now().UnixMilli()-60_000, 0)
	chs := pushRecordsChanges(c.Replica, &seq, &clock, 1, nil)
	// Changes of 300 ops (10 records), about 28 KB served each.
	var small []api.Change
	for _, ch := range chs {
		for i := 0; i < len(ch.Ops); i += 300 {
			small = append(small, api.Change{Seq: uint64(len(small) + 1), Ops: ch.Ops[i : i+300]})
		}
	}
	if _, err := e.Push(context.Background(), c, small[:40]); err != nil {
		t.Fatal(err)
	}
	other := Caller{User: "x", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	resp, err := e.Pull(context.Background(), other, cursor{mode: modeLog, teams: teamsHash(other.Teams)}.encode(), 0)
	if err != nil {
		t.Fatal(err)
	}
	served, largest := 0, 0
	for _, ch := range resp.Changes {
		served += len(ch.Ops)
		largest = max(largest, len(ch.Ops))
	}
	if !resp.More || served > page+largest {
		t.Fatalf("a page of %d changes serves %d bytes of ops (more %v), want at most PageBytes %d plus one change (%d)", len(resp.Changes), served, resp.More, page, largest)
	}
}
