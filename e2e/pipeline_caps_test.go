package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// What a device learns of the server and keeps (client-sdk/pipeline.go:
// m/pipelines, m/packedpush), its small first request, and faults on the
// path of the third request in flight.

// seenSync is one sync request as recProxy saw it.
type seenSync struct {
	after    string // api.HeaderAfterSeq
	pushOnly bool
	packed   bool
	coding   string // Content-Encoding
	seqs     []uint64
	full     []bool // per change: sent with its ops (not a stub)
	fault    string // what the proxy did instead of passing the reply back, if anything
	hw       uint64 // the reply's high-water, if it was read
}

// recProxy forwards to target and records every sync request (decoded:
// zstd or gzip, plain or packed). fault, armed for the n-th sync request
// from arm on, replaces passing its reply back: "drop-request" (the server
// never sees it), "drop-reply" (the server applies it, the device never
// hears) or "cut-reply" (half the reply, then the connection closes). old
// makes it stand for a server that predates packed pushes and pipelining:
// requests lose api.SyncRequest.Packed and PushOnly and the
// api.HeaderAfterSeq header (which such a server ignores), replies lose
// ReadsPacked and Pipelines.
type recProxy struct {
	t        *testing.T
	target   string
	upstream *http.Client

	mu     gosync.Mutex
	old    bool
	syncs  []seenSync
	faultN int // 1-based index in syncs; 0: none
	fault  string
}

func newRecProxy(t *testing.T, target string) (*recProxy, string) {
	p := &recProxy{t: t, target: target, upstream: &http.Client{Timeout: 20 * time.Second}}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	return p, hs.URL
}

// reset forgets the requests seen and arms fault for the n-th from now
// (0: none).
func (p *recProxy) reset(n int, fault string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncs, p.faultN, p.fault = nil, n, fault
}

func (p *recProxy) setOld(old bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.old = old
}

func (p *recProxy) seen() []seenSync {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seenSync(nil), p.syncs...)
}

func decodeSyncBody(coding string, body []byte) (*api.SyncRequest, error) {
	plain := body
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if plain, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	case "zstd":
		zr, err := zstd.NewReader(nil)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		if plain, err = zr.DecodeAll(body, nil); err != nil {
			return nil, err
		}
	}
	var req api.SyncRequest
	if err := msgpack.Unmarshal(plain, &req); err != nil {
		return nil, err
	}
	return &req, nil
}

func (p *recProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		sdkHangUp(w)
		return
	}
	hdr := r.Header.Clone()
	idx, fault, old := -1, "", false
	if r.URL.Path == "/v1/sync" {
		coding := r.Header.Get("Content-Encoding")
		req, err := decodeSyncBody(coding, body)
		if err != nil {
			p.t.Errorf("proxy: undecodable sync request: %v", err)
			sdkHangUp(w)
			return
		}
		s := seenSync{after: r.Header.Get(api.HeaderAfterSeq), pushOnly: req.PushOnly, packed: len(req.Packed) > 0, coding: coding}
		changes := req.Changes
		for _, b := range req.Packed {
			cs, err := api.UnpackPush(b, 1<<20)
			if err != nil {
				p.t.Errorf("proxy: packed block: %v", err)
			}
			changes = append(changes, cs...)
		}
		for _, c := range changes {
			if n := len(s.seqs); n > 0 && s.seqs[n-1] == c.Seq {
				continue // one change continued in the next block
			}
			s.seqs = append(s.seqs, c.Seq)
			s.full = append(s.full, len(c.Ops) > 0)
		}
		p.mu.Lock()
		p.syncs = append(p.syncs, s)
		idx, old = len(p.syncs)-1, p.old
		if idx+1 == p.faultN {
			fault = p.fault
			p.syncs[idx].fault = fault
		}
		p.mu.Unlock()
		if fault == "drop-request" {
			sdkHangUp(w)
			return
		}
		hdr.Del("Accept-Encoding") // plain replies, to read them here
		if old {
			req.Packed, req.PushOnly = nil, false
			if body, err = msgpack.Marshal(req); err != nil {
				sdkHangUp(w)
				return
			}
			hdr.Del("Content-Encoding")
			hdr.Del(api.HeaderAfterSeq)
		}
	}
	up, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		sdkHangUp(w)
		return
	}
	up.Header = hdr
	resp, err := p.upstream.Do(up)
	if err != nil {
		sdkHangUp(w)
		return
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		sdkHangUp(w)
		return
	}
	if idx >= 0 && resp.StatusCode == http.StatusOK {
		var sr api.SyncResponse
		if err := msgpack.Unmarshal(out, &sr); err == nil {
			p.mu.Lock()
			p.syncs[idx].hw = sr.HighWater
			p.mu.Unlock()
			if old {
				sr.ReadsPacked, sr.Pipelines = false, false
				if out, err = server.EncodeSyncResponse(&sr); err != nil {
					sdkHangUp(w)
					return
				}
			}
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	switch fault {
	case "drop-reply":
		sdkHangUp(w)
		return
	case "cut-reply":
		w.Header().Set("Content-Length", fmt.Sprint(len(out)))
		w.WriteHeader(resp.StatusCode)
		w.Write(out[:len(out)/2])
		w.(http.Flusher).Flush()
		sdkHangUp(w)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(out)))
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// bigWrite gives each of refs a long note, one change each.
func bigWrite(t *testing.T, d *client.Replica, refs []client.Ref, round int) {
	t.Helper()
	note := string(bytes.Repeat([]byte("n"), 4000))
	for i, ref := range refs {
		if err := d.Append(context.Background(), ref, "case_notes", fmt.Sprintf("round %d note %d %s", round, i, note)); err != nil {
			t.Fatal(err)
		}
	}
}

// bigBatches creates n batches of 10 people with long notes, 60 ops and
// about 40 KB each.
func bigBatches(t *testing.T, d *client.Replica, n int) {
	t.Helper()
	note := string(bytes.Repeat([]byte("h"), 1900))
	for b := range n {
		err := d.Batch(context.Background(), func(bt *client.Batch) error {
			for i := range 10 {
				p := sdkPerson(fmt.Sprintf("B%d-%d", b, i))
				p["household_notes"], p["communication_needs"] = note, note
				if _, err := bt.Create(client.Ref{Team: sdkTeam, Collection: "people"}, p); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSDKSmallFirstRequest: a fresh device with a big push (it has read
// no reply of the server yet) sends only its first change in its first
// request, plainly encoded; the next goes packed, as soon as the first
// reply has come (following seq 1), and the one after it pipelined. A fresh device with little to push sends it all at once, in
// the round trips it always took.
func TestSDKSmallFirstRequest(t *testing.T) {
	e := pipeEnv(t)
	px, url := newRecProxy(t, e.http.URL)
	e.url = url
	four := func(o *client.Options) { o.MaxChangesPerRequest, o.MaxOpsPerChange = 4, 60 } // a batch a change
	ann := e.device("ann", "", four)
	bigBatches(t, ann, 12)
	res := sdkMustSync(t, ann)
	s := px.seen()
	if len(s) < 4 {
		t.Fatalf("%d requests, want a long push", len(s))
	}
	t.Logf("%d rounds; first: %d changes, packed %v; second: %d, packed %v; third: after %q", res.Rounds, len(s[0].seqs), s[0].packed, len(s[1].seqs), s[1].packed, s[2].after)
	if len(s[0].seqs) != 1 || s[0].packed {
		t.Fatalf("first request: %d changes, packed %v; want one change, plain", len(s[0].seqs), s[0].packed)
	}
	if len(s[1].seqs) < 2 || !s[1].packed || s[1].after != "1" {
		t.Fatalf("second request: %d changes, packed %v, after %q; want several, packed, following seq 1", len(s[1].seqs), s[1].packed, s[1].after)
	}
	if s[2].after == "" {
		t.Fatal("third request not pipelined")
	}
	if res.Pushed != 12 {
		t.Fatalf("pushed %d changes, want 12", res.Pushed)
	}

	// Little to push: as before, one request with all of it.
	px.reset(0, "")
	bea := e.device("bea", "", func(o *client.Options) { o.MaxChangesPerRequest, o.MaxOpsPerChange = 4, 12 })
	sdkSeedPeople(t, bea, 3) // 12 ops: one change
	sdkSeedPeople(t, bea, 2) // and another
	sdkMustSync(t, bea)
	s = px.seen()
	if len(s) == 0 || len(s[0].seqs) != 2 {
		t.Fatalf("little to push: first request of %+v; want both changes", s)
	}
	for _, r := range s[1:] {
		if len(r.seqs) != 0 {
			t.Fatalf("little to push: a later request pushed %v", r.seqs)
		}
	}
	sdkMustSync(t, ann)
	sdkAssertConverged(t, ann, bea)
}

// TestSDKCapabilitiesAfterRestart: what the server said it reads and
// orders is stored with each reply, so a restarted device's first push is
// packed and its second goes pipelined, ahead of the first's reply,
// without a small first request.
func TestSDKCapabilitiesAfterRestart(t *testing.T) {
	e := pipeEnv(t)
	px, url := newRecProxy(t, e.http.URL)
	e.url = url
	dir := t.TempDir()
	ann := e.device("ann", dir, pipeSmall)
	refs := sdkSeedPeople(t, ann, 40)
	sdkMustSync(t, ann)
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	ann = e.open(dir, pipeSmall)
	bigWrite(t, ann, refs, 0)
	px.reset(0, "")
	sdkMustSync(t, ann)
	s := px.seen()
	if len(s) < 3 {
		t.Fatalf("%d requests, want a long push", len(s))
	}
	if !s[0].packed || len(s[0].seqs) < 2 || s[0].coding != "zstd" {
		t.Fatalf("first request after the restart: packed %v, %d changes, coding %q; want several, packed, zstd", s[0].packed, len(s[0].seqs), s[0].coding)
	}
	if s[1].after == "" || !s[1].packed {
		t.Fatalf("second request after the restart: after %q, packed %v; want pipelined and packed", s[1].after, s[1].packed)
	}
	if ops, _ := ann.PendingOps(context.Background()); len(ops) != 0 {
		t.Fatalf("%d ops pending", len(ops))
	}
}

// TestSDKServerDowngraded: a device stored that the server reads packed
// pushes and orders pipelined ones; restarted, it talks to a server that
// does neither (ignores the packed changes, the push-only flag and the
// header). The device learns it from the first reply and goes on plain and
// one request at a time: nothing lost, nothing applied twice, converged.
func TestSDKServerDowngraded(t *testing.T) {
	e := pipeEnv(t)
	px, url := newRecProxy(t, e.http.URL)
	e.url = url
	dir := t.TempDir()
	ann := e.device("ann", dir, pipeSmall)
	refs := sdkSeedPeople(t, ann, 20)
	sdkMustSync(t, ann)
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	px.setOld(true)
	ann = e.open(dir, pipeSmall)
	pipeWrite(t, ann, refs, 0)
	px.reset(0, "")
	res := sdkMustSync(t, ann)
	s := px.seen()
	packed, pipelined := 0, 0
	for i, r := range s {
		if r.packed {
			packed++
		}
		if r.after != "" {
			pipelined++
		}
		if i >= 2 && (r.packed || r.after != "") {
			t.Fatalf("request %d still packed (%v) or pipelined (%q) after the first reply", i+1, r.packed, r.after)
		}
	}
	t.Logf("%d rounds, %d requests: %d packed, %d pipelined", res.Rounds, len(s), packed, pipelined)
	if packed == 0 {
		t.Fatal("the device did not start packed: nothing downgraded")
	}
	if ops, _ := ann.PendingOps(context.Background()); len(ops) != 0 {
		t.Fatalf("%d ops pending", len(ops))
	}
	// And it stays so after another restart.
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	ann = e.open(dir, pipeSmall)
	pipeWrite(t, ann, refs, 1)
	px.reset(0, "")
	sdkMustSync(t, ann)
	for i, r := range px.seen() {
		if r.packed || r.after != "" {
			t.Fatalf("after a second restart, request %d packed (%v) or pipelined (%q)", i+1, r.packed, r.after)
		}
	}
	px.setOld(false)
	bea := e.device("bea", "", pipeSmall)
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea)
	pipeAssertHistoryOnce(t, e, refs, 4+2*2)
}

// TestSDKThirdInFlightFaults: the reply to the first request sent as the
// third in flight is lost, cut, or the request itself never reaches the
// server. The device goes on one request at a time from the first
// unacknowledged change: it learns the server's high-water with a request
// that pushes nothing and then sends what the server holds only as stubs.
// Nothing is lost or applied twice.
func TestSDKThirdInFlightFaults(t *testing.T) {
	for _, fault := range []string{"drop-reply", "cut-reply", "drop-request"} {
		t.Run(fault, func(t *testing.T) {
			e := pipeEnv(t)
			px, url := newRecProxy(t, e.http.URL)
			e.url = url
			ann := e.device("ann", "", pipeSmall)
			refs := sdkSeedPeople(t, ann, 20)
			sdkMustSync(t, ann)
			for round := range 2 {
				pipeWrite(t, ann, refs, round)
			}
			px.reset(3, fault) // the first request sent as the third in flight
			if _, err := ann.Sync(context.Background()); err != nil && !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("sync: %v", err)
			}
			sdkSyncUntilDone(t, ann, 5)
			s := px.seen()
			if len(s) < 4 || s[2].fault != fault || s[2].after == "" {
				t.Fatalf("requests %+v; want the third pipelined and faulted", s)
			}
			// After the fault the device learns the high-water: from a
			// request that pushes nothing, or from the reply to a request
			// sent ahead that came all the same (§23), after which its
			// first request sends the changes the server holds as stubs.
			// Until then no request but one sent ahead pushes, and from
			// then on nothing at or below it goes in full.
			probe := -1
			for i := 3; i < len(s); i++ {
				if s[i].fault == "" && (len(s[i].seqs) == 0 || s[i].after == "" && !slices.Contains(s[i].full, true)) {
					probe = i
					break
				}
				if s[i].after == "" {
					t.Fatalf("request %d after the fault, not pipelined, pushes %v (full %v) before learning the high-water; all: %+v", i+1, s[i].seqs, s[i].full, s)
				}
			}
			if probe < 0 {
				t.Fatalf("no request learnt the high-water after the fault: %+v", s)
			}
			hw := s[probe].hw
			for _, r := range s[probe+1:] {
				for j, seq := range r.seqs {
					if seq <= hw && r.full[j] {
						t.Fatalf("seq %d, held by the server (high-water %d), sent again in full", seq, hw)
					}
				}
			}
			t.Logf("%d requests; probe at %d (high-water %d)", len(s), probe+1, hw)
			if ops, _ := ann.PendingOps(context.Background()); len(ops) != 0 {
				t.Fatalf("%d ops pending", len(ops))
			}
			bea := e.device("bea", "", pipeSmall)
			sdkMustSync(t, bea)
			sdkAssertConverged(t, ann, bea)
			pipeAssertHistoryOnce(t, e, refs, 4+2*2)
		})
	}
}
