package client

import (
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
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
	planResults(w, sent, results[:2], time.Time{})
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
	planResults(w, sent, results, time.Time{})
	if len(w.Rejections) != 0 || len(w.Unstored) != 1 || w.Unstored[0].Code != api.CodeRecordErased {
		t.Fatalf("rejections %+v, unstored %+v; want one reported, none stored", w.Rejections, w.Unstored)
	}
	if len(w.Acked) != 1 {
		t.Fatalf("acked %v, want seq 4", w.Acked)
	}
}
