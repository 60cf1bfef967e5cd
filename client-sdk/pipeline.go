package client

// Pipelined sync (docs/PROTOCOL.md "Pipelined pushes"). One request at a
// time leaves the server idle while the device stores each reply, and the
// device idle while the server commits. Sync keeps up to two requests on
// the wire instead:
//
//   - push: while a request that pushes is in flight, the next changes
//     (prefetched, prefetch.go) go in a request sent ahead of its reply,
//     with api.HeaderAfterSeq naming the last seq of the one before, so
//     that the server applies them after it. Only to a server that said
//     it orders them (api.SyncResponse.Pipelines). Of two requests in
//     flight only one pulls: the request ahead of a pulling one is
//     push-only (api.SyncRequest.PushOnly), and the one ahead of a
//     push-only one pulls from the stored cursor, which no request in
//     flight is about to move.
//   - three in flight: once a request's reply has come, before it is
//     stored, the next push goes (pushNext): after the one still on the
//     wire, or after this one if none is. The server thus has the next
//     push to prepare while it commits the one before, rather than after
//     the device stored a reply and packed the next changes. The server gives a request's
//     per-device slot back before it writes the reply, and the device
//     reads a reply whole before it sends, so the server still sees at
//     most two of the device's requests.
//   - pull: when a reply says more follows, the next page is asked for
//     with the reply's cursor before the reply is stored, from any server
//     (the request is an ordinary one).
//
// Replies are handled strictly in the order sent, each exactly as a reply
// to a request sent alone; a cursor is stored only with its page, in the
// same transaction, after the page before it. The requests ahead stand
// only if the reply before them was stored and acknowledged every change
// it sent (aheadStands). Otherwise, and after any failure, the requests
// ahead are cancelled and discarded (their replies, if any came, teach
// only the high-water), and the rest of the Sync goes one request at a
// time from the first unacknowledged change, as before: the server dedupes
// changes by seq, so whatever a discarded request applied comes back as
// duplicates (or is sent as stubs, highwater.go).
//
// What the server offers (its capabilities) is learnt from every reply
// and stored with it (m/pipelines, m/packedpush, m/zstdpush), so that a
// restarted device's first push is packed and pipelined at once. A device
// that knows nothing of the server yet (never stored a reply) makes its
// first request small when it has much to push (smallFirst): the reply
// says what the server reads, and the rest goes packed and pipelined.

import (
	"context"

	"github.com/doorstep-health/doorstep/api"
)

// flight is one sync request on the wire, sent by a goroutine that wait
// and drop wait for.
type flight struct {
	req       *api.SyncRequest
	changes   []pushChange // what the reply's results are matched against (pushPlan)
	wire      []pushChange // the changes as sent (stubHeld)
	pipelined bool         // sent while an earlier request was in flight
	cancel    context.CancelFunc
	done      chan struct{}
	resp      *api.SyncResponse
	w         wire
	err       error
}

// pulls reports whether the request asks for a page.
func (f *flight) pulls() bool { return !f.req.PushOnly }

// lastSeq is the last seq the request pushes, 0 if none.
func (f *flight) lastSeq() uint64 {
	if len(f.changes) == 0 {
		return 0
	}
	return f.changes[len(f.changes)-1].Seq
}

// launch puts req, pushing changes, on the wire in a goroutine: the changes
// the server already holds as stubs (highwater.go), packed when the server
// reads that. after is the seq a pipelined request follows (0: none).
func (r *Replica) launch(ctx context.Context, req *api.SyncRequest, changes []pushChange, after uint64, pipelined bool) *flight {
	wire := r.stubHeld(changes, req.Epoch) // highwater.go
	ctx, cancel := context.WithCancel(ctx)
	f := &flight{req: req, changes: changes, wire: wire, pipelined: pipelined, cancel: cancel, done: make(chan struct{})}
	packed := false
	if len(wire) > 0 && r.readsPacked.Load() && !r.opts.PlainPush {
		// The server said it reads packed pushes (docs/PROTOCOL.md
		// "Packed pull encoding"): the same changes, fewer bytes, the
		// stored blocks as they are (pushchange.go).
		blocks, ok, err := packWire(wire)
		if err != nil {
			return f.failLocally(err)
		}
		if ok {
			req.Changes, req.Packed, packed = nil, blocks, true
		}
	}
	if !packed {
		var err error
		if req.Changes, err = plainChanges(wire); err != nil {
			return f.failLocally(err)
		}
	}
	go func() {
		defer close(f.done)
		f.resp, f.w, f.err = r.sendSync(ctx, req, after, pipelined)
	}()
	return f
}

// failLocally ends f, not sent, with err (a stored change that does not
// decode): with nothing on the wire, nothing may have reached the server,
// so its wire is cleared and the next request is no probe (noteAttempt).
func (f *flight) failLocally(err error) *flight {
	f.wire, f.err = nil, err
	close(f.done)
	return f
}

// wait waits for the reply.
func (f *flight) wait() (*api.SyncResponse, wire, error) {
	<-f.done
	f.cancel()
	return f.resp, f.w, f.err
}

// launchAhead sends the request after cur while cur's reply is not yet
// handled: pushing changes (after cur's last seq), and pulling from cursor
// if pull, else push-only.
func (r *Replica) launchAhead(ctx context.Context, cur *flight, changes []pushChange, pull bool, cursor []byte) *flight {
	req := &api.SyncRequest{
		Protocol:     api.ProtocolVersion,
		Replica:      r.id,
		Clock:        r.reading(),
		Schema:       r.opts.SchemaVersion,
		Cursor:       cursor,
		PullLimit:    cur.req.PullLimit,
		PullEncoding: cur.req.PullEncoding,
		Epoch:        cur.req.Epoch,
		// An old server ignores PushOnly and pulls from cursor, the
		// stored one: a page merged again, its cursor not stored.
		PushOnly: !pull,
	}
	return r.launch(ctx, req, changes, cur.lastSeq(), true)
}

// drop cancels and discards f (nil: none), once it has ended, and returns
// nil. A reply that came all the same teaches the high-water; a request
// that pushed and got none makes the next request a probe (highwater.go).
func (r *Replica) drop(f *flight) *flight {
	if f == nil {
		return nil
	}
	f.cancel()
	resp, _, err := f.wait()
	r.noteAttempt(f.wire, resp, err)
	return nil
}

// dropAll cancels every request of queue at once and then discards each,
// in the order sent (drop), and returns an empty queue.
func (r *Replica) dropAll(queue []*flight) []*flight {
	for _, f := range queue {
		f.cancel()
	}
	for _, f := range queue {
		r.drop(f)
	}
	return nil
}

// Capabilities of the server as the replica knows them (Replica.pipelines):
// capKnown is set once a sync reply was read, in this process or stored
// (m/pipelines); capOrders when the last said it orders pipelined pushes
// (api.SyncResponse.Pipelines).
const (
	capKnown uint32 = 1 << iota
	capOrders
)

// capsOf is what a reply says of pipelining.
func capsOf(resp *api.SyncResponse) uint32 {
	if resp.Pipelines {
		return capKnown | capOrders
	}
	return capKnown
}

// pipelinesByte is the m/pipelines value stored with a reply that said
// orders (api.SyncResponse.Pipelines) or not; loadPipelines reads it back
// (absent: nothing known, a replica whose last reply an older build
// stored).
func pipelinesByte(orders bool) []byte {
	if orders {
		return []byte{1}
	}
	return []byte{0}
}

func loadPipelines(v []byte) uint32 {
	switch {
	case v == nil:
		return 0
	case len(v) == 1 && v[0] == 1:
		return capKnown | capOrders
	}
	return capKnown
}

// smallFirstBytes is how much a push must hold (opsSize) for a device that
// knows nothing of the server yet to send only its first change in its
// first request (smallFirst). Below it, an extra round trip would cost a
// slow link more than the plain, gzipped encoding of the rest does.
const smallFirstBytes = 128 << 10

// smallFirst returns how many of changes the next request pushes when it
// is the first that knows nothing of the server (known false): one when
// they are several and hold at least smallFirstBytes, so that the reply
// says soon what the server reads (packed pushes, zstd, pipelining) and
// the rest goes in that form, pipelined, rather than plain, gzipped and
// one request at a time; all of them otherwise. A device with nothing to
// push, or little, sends what it would have, in as many round trips.
func smallFirst(known bool, changes []pushChange) int {
	if known || len(changes) < 2 {
		return len(changes)
	}
	n := 0
	for i := range changes {
		if n += changes[i].est; n >= smallFirstBytes {
			return 1
		}
	}
	return len(changes)
}

// pipeState is what the pipelining decisions read.
type pipeState struct {
	off     bool // Options.Serial, or a failure earlier in this Sync
	orders  bool // the server orders pipelined pushes (api.SyncResponse.Pipelines)
	probing bool // the next request learns the high-water first (highwater.go)
	ahead   bool // a request is already ahead of cur
	// cur, the request in flight: the changes it pushes, and whether it
	// pulls.
	curPushed int
	curPulls  bool
	// For pushNext: the request ahead of cur (if ahead), whose changes
	// the next follow, and whether it pulls.
	aheadPushed int
	aheadPulls  bool
}

// pushAhead decides, while cur is in flight and next changes are
// prefetched after it, whether to send them ahead of cur's reply, and
// whether that request pulls: only if cur does not (one page at a time).
func pushAhead(s pipeState, next int) (send, pull bool) {
	send = !s.off && s.orders && !s.probing && !s.ahead && s.curPushed > 0 && next > 0
	return send, !s.curPulls
}

// pushNext decides, once cur's reply has come (acksAll: it acknowledges
// every change cur sent, replyAcksAll) but before it is stored, whether
// to send the next changes now (next of them prefetched after the last
// request sent: the one ahead of cur if ahead, else cur), following that
// request, and whether the new one pulls: only if neither cur nor the one
// ahead does, from the stored cursor, which neither moves. A reply that
// acknowledges less would make every request ahead be discarded
// (aheadStands): nothing more goes. The one ahead, if any, must push (its
// last seq is the one the new request follows).
func pushNext(s pipeState, acksAll bool, next int) (send, pull bool) {
	send = !s.off && s.orders && !s.probing && acksAll && s.curPushed > 0 && next > 0 && (!s.ahead || s.aheadPushed > 0)
	return send, !s.curPulls && !(s.ahead && s.aheadPulls)
}

// replyAcksAll reports whether resp acknowledges each of sent, in order
// (applied or duplicate): a look before the reply is stored at whether
// the requests sent after it will stand (aheadStands has the last word).
func replyAcksAll(resp *api.SyncResponse, sent []pushChange) bool {
	if resp == nil || len(resp.Results) != len(sent) {
		return false
	}
	for i, cr := range resp.Results {
		if cr.Seq != sent[i].Seq || (cr.Status != api.ChangeApplied && cr.Status != api.ChangeDuplicate) {
			return false
		}
	}
	return true
}

// pullAhead decides, when cur's reply has come but is not yet stored,
// whether to ask for the next page with its cursor now: cur pulled, the
// reply says more follows, and there is nothing to push with it (cur
// pushed nothing and the outbox is empty: the page requests that follow
// are those of a request sent alone). Any server answers such a request.
func pullAhead(s pipeState, resp *api.SyncResponse, outboxEmpty bool) bool {
	return !s.off && !s.ahead && !s.probing && s.curPulls && s.curPushed == 0 && outboxEmpty &&
		resp != nil && resp.More && !resp.Wipe
}

// aheadStands reports whether a request sent ahead of cur may stand once
// cur's reply (which pushed sent changes) is stored as out: the reply
// acknowledged every change sent and asked for nothing to be sent again,
// set aside or rewritten. Otherwise the request ahead is discarded and
// the Sync goes on one request at a time.
func aheadStands(out *replyWrites, sent int) bool {
	return out != nil && len(out.Acked) == sent && len(out.SetAside) == 0 && out.Gap == 0 &&
		out.Refused == nil && len(out.Outbox) == 0 && out.DroppedOps == 0
}

// syncDone reports whether Sync may end after a reply: the outbox is
// empty, the reply was to a request that pulled and said nothing more
// follows, and no request is ahead.
func syncDone(outboxEmpty bool, resp *api.SyncResponse, curPulls, ahead bool) bool {
	return outboxEmpty && curPulls && !ahead && !resp.More
}

// pipelinedGaps rewrites the seq_gap refusals in the reply to a pipelined
// request whose first change is first: one that names a seq below first
// says only that the server took this request before the one it follows
// (whose reply, handled before, acknowledged those seqs), not that it
// lacks changes this replica no longer holds. The changes of this request
// are then sent again, one request at a time, from first.
func pipelinedGaps(results []api.ChangeResult, first uint64) {
	for i := range results {
		if cr := &results[i]; cr.Status == api.ChangeRefused && cr.Code == api.CodeSeqGap && cr.Expected < first {
			cr.Expected = first
		}
	}
}
