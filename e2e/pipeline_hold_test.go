package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/badger"
)

// gatedKV is a real Badger store whose commits wait while the gate is
// shut: a test holds a push in the committer, its body read and decoded,
// for as long as it likes.
type gatedKV struct {
	store.KV
	mu   gosync.Mutex
	open chan struct{} // nil: commits pass
}

type gatedTxn struct {
	store.Txn
	kv *gatedKV
}

func (g *gatedKV) Begin(ctx context.Context, update bool) (store.Txn, error) {
	t, err := g.KV.Begin(ctx, update)
	if err != nil || !update {
		return t, err
	}
	return gatedTxn{t, g}, nil
}

func (t gatedTxn) Commit() error {
	t.kv.mu.Lock()
	open := t.kv.open
	t.kv.mu.Unlock()
	if open != nil {
		<-open
	}
	return t.Txn.Commit()
}

// shut holds every commit from now on until the returned func is called.
func (g *gatedKV) shut() (reopen func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.open = ch
	g.mu.Unlock()
	var once gosync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.open = nil
			g.mu.Unlock()
			close(ch)
		})
	}
}

// gatedEnv is an env whose records store is gated (gatedKV).
func gatedEnv(t *testing.T, mods ...func(*server.Config)) (*env, *gatedKV) {
	t.Helper()
	kv, err := badger.Open(badger.Options{Dir: filepath.Join(t.TempDir(), "records"), SmallMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedKV{KV: kv}
	e := newEnv(t, append([]func(*server.Config){func(c *server.Config) { c.Records = g }}, mods...)...)
	return e, g
}

type syncAnswer struct {
	st   int
	resp *api.SyncResponse
	p    *api.Problem
}

// sendSync posts body as d's sync request with hdr, answering on the
// returned channel.
func sendSync(e *env, d *device, body []byte, hdr map[string]string) <-chan syncAnswer {
	ch := make(chan syncAnswer, 1)
	go func() {
		st, resp, p := e.postSync(d.access, body, hdr)
		ch <- syncAnswer{st, resp, p}
	}()
	return ch
}

// malformed is d's sync request encoded and followed by pad bytes: read
// and decoded, it is refused as malformed_body (trailing bytes). How soon
// it is answered tells whether a pipelined request was read before it
// waited for the one before.
func malformed(t *testing.T, d *device, pad int) []byte {
	return append(encode(t, d.request()), bytes.Repeat([]byte{0xc0}, pad)...)
}

func after(seq uint64) map[string]string {
	return map[string]string{api.HeaderAfterSeq: fmt.Sprint(seq)}
}

// answeredWithin reports the answer on ch if it comes within d.
func answeredWithin(ch <-chan syncAnswer, d time.Duration) (syncAnswer, bool) {
	select {
	case a := <-ch:
		return a, true
	case <-time.After(d):
		return syncAnswer{}, false
	}
}

// pushInCommitter sends d's push of one change and returns once the
// server has it in the committer, held at the gate (its high-water not
// moved, the request not answered).
func pushInCommitter(t *testing.T, e *env, d *device) <-chan syncAnswer {
	t.Helper()
	ch := sendSync(e, d, encode(t, d.request(d.change(d.write("wigan", "people", fmt.Sprintf("p%d", d.seq+1), "given_name", "Ann")))), nil)
	time.Sleep(150 * time.Millisecond) // read, decoded, queued: the gate holds it
	if a, ok := answeredWithin(ch, 0); ok {
		t.Fatalf("the push before went through the shut gate: %+v", a)
	}
	return ch
}

// TestPipelinedPushPreparedWhileTheOneBeforeCommits: a pipelined push
// that arrives while the request it follows is being committed (its body
// read and decoded, the commit held) is read, decoded and prepared at
// once, not after that commit: a malformed one is refused before the
// commit ends; a valid one waits, prepared, and is applied after it, in
// order, and counted as prepared.
func TestPipelinedPushPreparedWhileTheOneBeforeCommits(t *testing.T) {
	e, g := gatedEnv(t)
	ann := e.login("ann")
	reopen := g.shut()
	defer reopen()
	first := pushInCommitter(t, e, ann)
	a, ok := answeredWithin(sendSync(e, ann, malformed(t, ann, 100), after(1)), 5*time.Second)
	if !ok {
		t.Fatal("a malformed pipelined push was not read until the commit before it ended")
	}
	if a.st != http.StatusBadRequest || a.p.Code != api.CodeMalformedBody {
		t.Fatalf("malformed pipelined push: %d %+v", a.st, a.p)
	}
	second := ann.request(ann.change(ann.write("wigan", "people", "p2", "given_name", "Bo")))
	second.PushOnly = true
	secondReply := sendSync(e, ann, encode(t, second), after(1))
	if a, ok := answeredWithin(secondReply, 300*time.Millisecond); ok {
		t.Fatalf("the pipelined push was answered before the one it follows committed: %+v", a)
	}
	reopen()
	if a := <-first; a.st != http.StatusOK || a.resp.Results[0].Status != api.ChangeApplied {
		t.Fatalf("first push: %d %+v %+v", a.st, a.resp, a.p)
	}
	a = <-secondReply
	if a.st != http.StatusOK || len(a.resp.Results) != 1 || a.resp.Results[0].Status != api.ChangeApplied || a.resp.HighWater != 2 {
		t.Fatalf("pipelined push: %d %+v %+v", a.st, a.resp, a.p)
	}
	if m := e.scrape(); !strings.Contains(m, `doorstep_sync_pipelined_total{prepared="true"} 1`) {
		t.Fatalf("the pipelined push is not counted as prepared:\n%s", grepLines(m, "doorstep_sync_pipelined"))
	}
}

// TestPipelinedPushHoldBoundPerDevice: a device's pipelined push that
// would hold more than PipelineHoldBytes, as sent or decoded, waits
// before its body is read (or decoded) as before the bound existed: a
// malformed one is answered only once the commit before it ends.
func TestPipelinedPushHoldBoundPerDevice(t *testing.T) {
	const bound = 2 << 10
	e, g := gatedEnv(t, func(c *server.Config) { c.PipelineHoldBytes = bound })
	ann, bea := e.login("ann"), e.login("bea")
	zbody := func(b []byte) []byte {
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(b, nil)
	}
	for _, tc := range []struct {
		name string
		body []byte
		hdr  map[string]string
	}{
		{"sent", malformed(t, ann, 2*bound), nil},
		{"decoded", zbody(malformed(t, ann, 4*bound)), map[string]string{"Content-Encoding": "zstd"}},
		{"within", malformed(t, ann, bound/2), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "decoded" && len(tc.body) >= bound {
				t.Fatalf("zstd body of %d bytes: the test needs one within the bound as sent", len(tc.body))
			}
			reopen := g.shut()
			defer reopen()
			// bea's push holds the committer, so that ann's first waits
			// in its queue, not taken (TestPipelinedPushHoldBoundAllDevices).
			blocker := pushInCommitter(t, e, bea)
			first := pushInCommitter(t, e, ann)
			hdr := after(ann.seq)
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			reply := sendSync(e, ann, tc.body, hdr)
			wait := 300 * time.Millisecond // long enough to be read, were it read
			if tc.name == "within" {
				wait = 5 * time.Second // how soon it is answered is not the point
			}
			a, early := answeredWithin(reply, wait)
			if early != (tc.name == "within") {
				t.Fatalf("answered before the commit before it ended: %v, want %v (%+v)", early, tc.name == "within", a)
			}
			reopen()
			if a := <-blocker; a.st != http.StatusOK {
				t.Fatalf("blocker push: %d %+v", a.st, a.p)
			}
			if a := <-first; a.st != http.StatusOK {
				t.Fatalf("first push: %d %+v", a.st, a.p)
			}
			if !early {
				a = <-reply
			}
			if a.st != http.StatusBadRequest || a.p.Code != api.CodeMalformedBody {
				t.Fatalf("malformed pipelined push: %d %+v", a.st, a.p)
			}
		})
	}
}

// TestPipelinedPushHoldBoundAllDevices: all devices' held pipelined
// pushes together hold at most SyncMemoryBudget / (2 × SyncMemoryFactor):
// with one device's push held decoded near that, another device's, within
// its own bound, waits before its body.
func TestPipelinedPushHoldBoundAllDevices(t *testing.T) {
	const budget = 128 << 10 // all devices hold at most 8 KiB
	total := int64(budget / (2 * server.SyncMemoryFactor))
	e, g := gatedEnv(t, func(c *server.Config) { c.SyncMemoryBudget = budget })
	ann, bea, cat := e.login("ann"), e.login("bea"), e.login("cat")
	reopen := g.shut()
	defer reopen()
	// cat's push holds the committer, so that ann's and bea's first
	// pushes wait in its queue, not taken: a pipelined push is let
	// through once the push it follows is taken (sync.Engine.OrderedHighWater).
	catFirst := pushInCommitter(t, e, cat)
	annFirst := pushInCommitter(t, e, ann)
	beaFirst := pushInCommitter(t, e, bea)
	// ann's pipelined push, valid and about 3/4 of the total, is held
	// decoded: it waits for the commit.
	big := ann.request(ann.change(ann.write("wigan", "people", "p9", "notes", strings.Repeat("x", int(total)*3/4))))
	big.PushOnly = true
	annReply := sendSync(e, ann, encode(t, big), after(1))
	for deadline := time.Now().Add(10 * time.Second); strings.Contains(e.scrape(), "doorstep_sync_pipelined_held_bytes 0\n"); {
		if a, ok := answeredWithin(annReply, 10*time.Millisecond); ok {
			t.Fatalf("ann's pipelined push answered before the commit before it: %+v", a)
		}
		if time.Now().After(deadline) {
			t.Fatal("ann's pipelined push is not held decoded")
		}
	}
	// bea's, malformed and about 1/2 of the total, does not fit beside it.
	beaReply := sendSync(e, bea, malformed(t, bea, int(total)/2), after(1))
	if a, ok := answeredWithin(beaReply, 300*time.Millisecond); ok {
		t.Fatalf("bea's pipelined push was read beside ann's held one, past the bound of all devices: %+v", a)
	}
	reopen()
	for _, ch := range []<-chan syncAnswer{catFirst, annFirst, beaFirst, annReply} {
		if a := <-ch; a.st != http.StatusOK || a.resp.Results[0].Status != api.ChangeApplied {
			t.Fatalf("push: %d %+v %+v", a.st, a.resp, a.p)
		}
	}
	if a := <-beaReply; a.st != http.StatusBadRequest || a.p.Code != api.CodeMalformedBody {
		t.Fatalf("bea's malformed pipelined push: %d %+v", a.st, a.p)
	}
	m := e.scrape()
	if !strings.Contains(m, `doorstep_sync_pipelined_total{prepared="true"} 1`) {
		t.Fatalf("ann's pipelined push is not counted as prepared:\n%s", grepLines(m, "doorstep_sync_pipelined"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPipelinedPushWaitsForTheBodyBefore: a pipelined push that arrives
// while the request it follows has not all arrived is not read before
// that one has its body (so it never takes memory the one before needs):
// a malformed one is answered only after the body before it came.
func TestPipelinedPushWaitsForTheBodyBefore(t *testing.T) {
	e := newEnv(t)
	ann := e.login("ann")
	release, firstReply := heldSync(t, e, ann, ann.request(ann.change(ann.write("wigan", "people", "p1", "given_name", "Ann"))))
	reply := sendSync(e, ann, malformed(t, ann, 100), after(1))
	if a, ok := answeredWithin(reply, 400*time.Millisecond); ok {
		t.Fatalf("a pipelined push was read before the body of the one it follows: %+v", a)
	}
	release()
	readSyncReply(t, <-firstReply)
	if a := <-reply; a.st != http.StatusBadRequest || a.p.Code != api.CodeMalformedBody {
		t.Fatalf("malformed pipelined push: %d %+v", a.st, a.p)
	}
}

// TestLargePushInTheCommitterHoldsNoLargeSlot: a large push (over
// server.SmallSyncBytes decoded) holds a large-sync slot only for its own
// work, not while it waits in the committer: with every slot's push held
// in the committer, another large push is read and decoded at once (a
// malformed one is refused before those commits end).
func TestLargePushInTheCommitterHoldsNoLargeSlot(t *testing.T) {
	e, g := gatedEnv(t)
	reopen := g.shut()
	defer reopen()
	var firsts []<-chan syncAnswer
	for i := range max(1, runtime.GOMAXPROCS(0)-1) { // every large slot
		d := e.login("ann")
		var ops []crdt.Op
		for f := range 10 {
			ops = append(ops, d.write("wigan", "people", fmt.Sprintf("big%d", i), fmt.Sprintf("f%d", f), strings.Repeat("x", 30<<10)))
		}
		firsts = append(firsts, sendSync(e, d, encode(t, d.request(d.change(ops...))), nil))
	}
	time.Sleep(300 * time.Millisecond) // read, decoded, queued: the gate holds them
	for _, ch := range firsts {
		if a, ok := answeredWithin(ch, 0); ok {
			t.Fatalf("a large push went through the shut gate: %d %+v", a.st, a.p)
		}
	}
	bea := e.login("bea")
	a, ok := answeredWithin(sendSync(e, bea, malformed(t, bea, server.SmallSyncBytes+1), nil), 5*time.Second)
	if !ok {
		t.Fatal("a large push was not read while the large pushes before it waited in the committer")
	}
	if a.st != http.StatusBadRequest || a.p.Code != api.CodeMalformedBody {
		t.Fatalf("malformed large push: %d %+v", a.st, a.p)
	}
	reopen()
	for _, ch := range firsts {
		if a := <-ch; a.st != http.StatusOK || a.resp.Results[0].Status != api.ChangeApplied {
			t.Fatalf("large push: %d %+v %+v", a.st, a.resp, a.p)
		}
	}
}
