package client

import (
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// The pipelining decisions (pipeline.go) are pure: what to send ahead of a
// reply, and whether what was sent ahead may stand.

func TestPushAhead(t *testing.T) {
	on := pipeState{orders: true, curPushed: 3, curPulls: true}
	for _, tc := range []struct {
		name       string
		s          pipeState
		next       int
		send, pull bool
	}{
		{"after a pulling request: push-only", on, 3, true, false},
		{"after a push-only request: pulls from the stored cursor", pipeState{orders: true, curPushed: 3}, 3, true, true},
		{"nothing prefetched", on, 0, false, false},
		{"cur pushes nothing", pipeState{orders: true, curPulls: true}, 3, false, false},
		{"old server", pipeState{curPushed: 3, curPulls: true}, 3, false, false},
		{"off (Serial or an earlier failure)", pipeState{off: true, orders: true, curPushed: 3, curPulls: true}, 3, false, false},
		{"probing the high-water", pipeState{probing: true, orders: true, curPushed: 3, curPulls: true}, 3, false, false},
		{"already one ahead", pipeState{ahead: true, orders: true, curPushed: 3, curPulls: true}, 3, false, false},
	} {
		send, pull := pushAhead(tc.s, tc.next)
		if send != tc.send || (send && pull != tc.pull) {
			t.Errorf("%s: pushAhead = %v, %v; want %v, %v", tc.name, send, pull, tc.send, tc.pull)
		}
	}
}

func TestPullAhead(t *testing.T) {
	more := &api.SyncResponse{More: true, Cursor: []byte("k")}
	pulling := pipeState{curPulls: true}
	for _, tc := range []struct {
		name  string
		s     pipeState
		resp  *api.SyncResponse
		empty bool
		want  bool
	}{
		{"more follows, nothing to push", pulling, more, true, true},
		{"any server: the request is an ordinary one", pipeState{curPulls: true, orders: false}, more, true, true},
		{"nothing more", pulling, &api.SyncResponse{}, true, false},
		{"outbox not empty: the next request pushes too", pulling, more, false, false},
		{"cur pushed", pipeState{curPulls: true, curPushed: 1}, more, true, false},
		{"cur was push-only: its reply holds no page", pipeState{}, more, true, false},
		{"one already ahead", pipeState{curPulls: true, ahead: true}, more, true, false},
		{"off", pipeState{curPulls: true, off: true}, more, true, false},
		{"wipe", pulling, &api.SyncResponse{More: true, Wipe: true}, true, false},
		{"no reply", pulling, nil, true, false},
	} {
		if got := pullAhead(tc.s, tc.resp, tc.empty); got != tc.want {
			t.Errorf("%s: pullAhead = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAheadStands(t *testing.T) {
	all := func() *replyWrites { return &replyWrites{Acked: []uint64{1, 2}} }
	for _, tc := range []struct {
		name string
		mod  func(*replyWrites)
		sent int
		want bool
	}{
		{"every change acknowledged", func(*replyWrites) {}, 2, true},
		{"one not acknowledged (a stub to send in full again)", func(w *replyWrites) { w.Acked = w.Acked[:1] }, 2, false},
		{"seq gap", func(w *replyWrites) { w.Gap = 1 }, 2, false},
		{"set aside", func(w *replyWrites) { w.SetAside = []setAside{{Seq: 2}} }, 2, false},
		{"refused", func(w *replyWrites) { w.Refused = ErrRefused }, 2, false},
		{"outbox rewritten (scope)", func(w *replyWrites) { w.Outbox = []keyWrite{{}} }, 2, false},
		{"ops dropped (scope)", func(w *replyWrites) { w.DroppedOps = 1 }, 2, false},
	} {
		w := all()
		tc.mod(w)
		if got := aheadStands(w, tc.sent); got != tc.want {
			t.Errorf("%s: aheadStands = %v, want %v", tc.name, got, tc.want)
		}
	}
	if aheadStands(nil, 0) {
		t.Error("aheadStands(nil) = true")
	}
}

func TestSyncDone(t *testing.T) {
	for _, tc := range []struct {
		name                string
		empty, pulls, ahead bool
		more, want          bool
	}{
		{"outbox empty, last page", true, true, false, false, true},
		{"more pages", true, true, false, true, false},
		{"outbox not empty", false, true, false, false, false},
		{"push-only reply: a pull is still owed", true, false, false, false, false},
		{"a request ahead to handle", true, true, true, false, false},
	} {
		if got := syncDone(tc.empty, &api.SyncResponse{More: tc.more}, tc.pulls, tc.ahead); got != tc.want {
			t.Errorf("%s: syncDone = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPipelinedGaps(t *testing.T) {
	results := []api.ChangeResult{
		{Seq: 25, Status: api.ChangeRefused, Code: api.CodeSeqGap, Expected: 22}, // taken before 22-24
		{Seq: 26, Status: api.ChangeRefused, Code: api.CodeSeqGap, Expected: 25}, // a gap within the request
		{Seq: 27, Status: api.ChangeApplied},
		{Seq: 28, Status: api.ChangeRefused, Code: api.CodeInvalidOp, Expected: 3},
	}
	pipelinedGaps(results, 25)
	for i, want := range []uint64{25, 25, 0, 3} {
		if results[i].Expected != want {
			t.Errorf("result %d: expected %d, want %d", i, results[i].Expected, want)
		}
	}
	// Planned as a reply, the rewritten gap asks to resend from 25, not
	// that the change is refused for good.
	sent := []api.Change{{Seq: 25}, {Seq: 26}}
	w := &replyWrites{}
	planResults(w, fromChanges(sent), results[:2], time.Time{})
	if w.Refused != nil || w.Gap != 25 {
		t.Fatalf("planned: refused %v, gap %d; want a gap at 25", w.Refused, w.Gap)
	}
}

// TestResultForAnOpNoLongerHeld: the server reports kept op results for a
// change the device sent (pipelined, or before a lost reply) and has since
// emptied by an erasure rule; the rejection is reported, not stored.
func TestResultForAnOpNoLongerHeld(t *testing.T) {
	sent := []api.Change{{Seq: 4}} // its op dropped from the outbox after it went
	results := []api.ChangeResult{{Seq: 4, Status: api.ChangeDuplicate,
		Ops: []api.OpResult{{Index: 0, Code: api.CodeRecordErased, Detail: "reported again"}}}}
	w := &replyWrites{}
	planResults(w, fromChanges(sent), results, time.Time{})
	if len(w.Rejections) != 0 || len(w.Unstored) != 1 || w.Unstored[0].Code != api.CodeRecordErased {
		t.Fatalf("rejections %+v, unstored %+v; want one reported, none stored", w.Rejections, w.Unstored)
	}
	if len(w.Acked) != 1 {
		t.Fatalf("acked %v, want seq 4", w.Acked)
	}
}

func TestPushNext(t *testing.T) {
	// cur's reply has come; one request is ahead of it (or none).
	on := pipeState{orders: true, ahead: true, curPushed: 3, curPulls: true, aheadPushed: 3}
	with := func(mod func(*pipeState)) pipeState { s := on; mod(&s); return s }
	for _, tc := range []struct {
		name       string
		s          pipeState
		acksAll    bool
		next       int
		send, pull bool
	}{
		{"cur pulls: push-only (its page not yet stored)", on, true, 3, true, false},
		{"the one ahead pulls: push-only", with(func(s *pipeState) { s.curPulls, s.aheadPulls = false, true }), true, 3, true, false},
		{"neither pulls: pulls from the stored cursor", with(func(s *pipeState) { s.curPulls = false }), true, 3, true, true},
		{"the reply does not acknowledge all: both ahead are to go", on, false, 3, false, false},
		{"nothing prefetched", on, true, 0, false, false},
		{"none ahead, cur pulls: push-only after cur", with(func(s *pipeState) { s.ahead = false }), true, 3, true, false},
		{"none ahead, cur push-only: pulls from the stored cursor", with(func(s *pipeState) { s.ahead, s.curPulls, s.aheadPulls = false, false, true }), true, 3, true, true},
		{"the one ahead pushes nothing (a page asked for)", with(func(s *pipeState) { s.aheadPushed = 0 }), true, 3, false, false},
		{"cur pushed nothing", with(func(s *pipeState) { s.curPushed = 0 }), true, 3, false, false},
		{"the server stopped ordering (this reply says so)", with(func(s *pipeState) { s.orders = false }), true, 3, false, false},
		{"off (Serial or an earlier failure)", with(func(s *pipeState) { s.off = true }), true, 3, false, false},
		{"probing the high-water", with(func(s *pipeState) { s.probing = true }), true, 3, false, false},
	} {
		send, pull := pushNext(tc.s, tc.acksAll, tc.next)
		if send != tc.send || (send && pull != tc.pull) {
			t.Errorf("%s: pushNext = %v, %v; want %v, %v", tc.name, send, pull, tc.send, tc.pull)
		}
	}
}

func TestReplyAcksAll(t *testing.T) {
	sent := []api.Change{{Seq: 4}, {Seq: 5}}
	ok := func(seq uint64, st api.ChangeStatus) api.ChangeResult { return api.ChangeResult{Seq: seq, Status: st} }
	for _, tc := range []struct {
		name    string
		results []api.ChangeResult
		want    bool
	}{
		{"applied and duplicate", []api.ChangeResult{ok(4, api.ChangeApplied), ok(5, api.ChangeDuplicate)}, true},
		{"quarantined ops in an applied change", []api.ChangeResult{ok(4, api.ChangeApplied),
			{Seq: 5, Status: api.ChangeApplied, Ops: []api.OpResult{{Index: 0, Code: api.CodeInvalidOp}}}}, true},
		{"one refused", []api.ChangeResult{ok(4, api.ChangeApplied), {Seq: 5, Status: api.ChangeRefused, Code: api.CodeSeqGap}}, false},
		{"one missing (a stub to send in full, or an old server's empty answer)", []api.ChangeResult{ok(4, api.ChangeApplied)}, false},
		{"none (a server that ignored a packed push)", nil, false},
		{"out of order", []api.ChangeResult{ok(5, api.ChangeApplied), ok(4, api.ChangeApplied)}, false},
	} {
		if got := replyAcksAll(&api.SyncResponse{Results: tc.results}, fromChanges(sent)); got != tc.want {
			t.Errorf("%s: replyAcksAll = %v, want %v", tc.name, got, tc.want)
		}
	}
	if replyAcksAll(nil, fromChanges(sent)) {
		t.Error("replyAcksAll(nil) = true")
	}
}

func TestSmallFirst(t *testing.T) {
	change := func(seq uint64, ops, valueBytes int) api.Change {
		c := api.Change{Seq: seq}
		for range ops {
			c.Ops = append(c.Ops, crdt.Op{Team: "t", Collection: "c", Record: "r", Field: "f", Value: make([]byte, valueBytes)})
		}
		return c
	}
	big := []api.Change{change(1, 1000, 100), change(2, 1000, 100), change(3, 1000, 100)}
	little := []api.Change{change(1, 3, 10), change(2, 3, 10)}
	for _, tc := range []struct {
		name    string
		known   bool
		changes []api.Change
		want    int
	}{
		{"nothing known, a big push: its first change alone", false, big, 1},
		{"known: all", true, big, 3},
		{"nothing known, a little push: all (no extra round trip)", false, little, 2},
		{"nothing known, one big change: all", false, big[:1], 1},
		{"nothing to push", false, nil, 0},
	} {
		if got := smallFirst(tc.known, fromChanges(tc.changes)); got != tc.want {
			t.Errorf("%s: smallFirst = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPipelinesStored(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    []byte
		want uint32
	}{
		{"absent: nothing known", nil, 0},
		{"orders", pipelinesByte(true), capKnown | capOrders},
		{"does not order", pipelinesByte(false), capKnown},
		{"unreadable: known, not ordering", []byte{7, 7}, capKnown},
	} {
		if got := loadPipelines(tc.v); got != tc.want {
			t.Errorf("%s: loadPipelines(%v) = %b, want %b", tc.name, tc.v, got, tc.want)
		}
	}
	if capsOf(&api.SyncResponse{Pipelines: true}) != capKnown|capOrders || capsOf(&api.SyncResponse{}) != capKnown {
		t.Error("capsOf")
	}
}
