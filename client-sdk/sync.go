package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// SyncResult summarises one Sync call.
type SyncResult struct {
	Rounds    int // request round trips that got a reply
	PushedOps int // ops in changes the server acknowledged
	Pushed    int // changes acknowledged (applied or duplicate)
	Pulled    int // pulled changes applied
	PulledOps int // ops in them
	Snapshot  int // snapshot records merged while bootstrapping
	Purged    int // records erased on the server and removed here
	Changed   int // distinct local records changed by the pull
	Rejected  []Rejection
	// BytesSent and BytesReceived count request and reply bodies as they
	// crossed the network (gzip-compressed where it paid), over the rounds
	// that got a reply.
	BytesSent, BytesReceived int64
	Bootstrapped             bool // this call started from an empty cursor or received snapshot pages
	// RateLimited counts the rounds the server refused as over its rate
	// limit; Sync waited as the server asked and went on.
	RateLimited int
}

// Progress reports a Sync in progress, after each stored page.
type Progress struct {
	Round         int
	Bootstrapping bool
	Snapshot      int // snapshot records received so far in this Sync
	Pulled        int // pulled changes received so far in this Sync
	Pending       int // ops still in the outbox
}

// Sync pushes the outbox and pulls until the outbox is empty and the server
// has nothing more, one POST /v1/sync round trip at a time. It may be
// interrupted at any point: an acknowledged change leaves the outbox only in
// the same local transaction that stores the reply's pulled page and
// cursor, so a request lost at any byte is simply repeated (the server
// dedupes changes by seq). Only one Sync runs at a time.
func (r *Replica) Sync(ctx context.Context) (SyncResult, error) {
	if r.serverURL() == "" {
		return SyncResult{}, ErrNoServer
	}
	if r.closed() {
		return SyncResult{}, ErrClosed
	}
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if r.closed() {
		return SyncResult{}, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.closeCtx, cancel)
	defer stop()

	r.setStatus(func(s *Status) { s.Syncing = true })
	res, err := r.sync(ctx)
	r.setStatus(func(s *Status) {
		s.Syncing = false
		if err != nil {
			s.LastError = err
			s.LastErrorCode = problemCode(err)
			s.SignedOut = errors.Is(err, ErrSignedOut)
		} else {
			s.LastError, s.LastErrorCode, s.SignedOut = nil, "", false
			s.LastSuccess = r.opts.Wall()
		}
		s.Rejected += len(res.Rejected)
	})
	if err != nil {
		r.log.Warn("sync failed", "err", err, "code", problemCode(err))
	} else if _, perr := r.PurgeAttachments(ctx); perr != nil {
		r.log.Warn("purge attachments", "err", perr) // retried after the next sync
	}
	return res, err
}

func (r *Replica) sync(ctx context.Context) (SyncResult, error) {
	var res SyncResult
	if r.Wiped() {
		return res, r.reportWipe(ctx)
	}
	pullLimit, maxChanges := r.requestSize()
	var resendFrom uint64
	idle := 0
	waits := 0            // consecutive waits the server asked for
	var next []pushChange // this round's changes, prefetched (prefetch.go)
	// queue holds the requests sent before cur's reply was handled, in
	// order (pipeline.go: one, or two once cur's reply has come); serial is
	// set once pipelining is off for the rest of this Sync.
	var queue []*flight
	var aheadPre *prefetched // the changes after the last of queue's, prefetched since it went
	serial := r.opts.Serial
	dropAhead := func() {
		queue = r.dropAll(queue)
		aheadPre.wait()
		aheadPre, serial = nil, true
	}
	defer func() { r.dropAll(queue); aheadPre.wait() }()
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		var cur *flight
		var pre *prefetched
		if len(queue) > 0 {
			cur, queue, next = queue[0], queue[1:], nil
			if len(queue) == 0 {
				pre, aheadPre = aheadPre, nil
			}
		} else {
			changes := next
			if next == nil {
				if err := r.seal(); err != nil {
					return res, err
				}
				var err error
				if changes, err = r.loadChanges(resendFrom, maxChanges); err != nil {
					return res, err
				}
			}
			next = nil
			resendFrom = 0
			changes = r.pushPlan(changes) // highwater.go
			// Knowing nothing of the server yet, a big push starts small
			// (pipeline.go); the changes left go in the next request.
			changes = changes[:smallFirst(r.pipelines.Load()&capKnown != 0, changes)]
			cursor, err := r.loadCursor()
			if err != nil {
				return res, err
			}
			if res.Rounds == 0 && len(cursor) == 0 {
				res.Bootstrapped = true
			}
			req := &api.SyncRequest{
				Protocol:  api.ProtocolVersion,
				Replica:   r.id,
				Clock:     r.reading(),
				Schema:    r.opts.SchemaVersion,
				Cursor:    cursor,
				PullLimit: pullLimit,
			}
			if !r.opts.PlainPull {
				req.PullEncoding = api.PullEncodingPacked
			}
			if err := r.beforeSync(ctx, req); err != nil { // epoch.go
				return res, err
			}
			cur = r.launch(ctx, req, changes, 0, false)
		}
		changes, cursor := cur.changes, cur.req.Cursor
		pipe := pipeState{off: serial, orders: r.pipelines.Load()&capOrders != 0, probing: r.hw.probe,
			ahead: len(queue) > 0, curPushed: len(changes), curPulls: cur.pulls()}
		if pre == nil && len(queue) == 0 {
			pre = r.prefetch(changes, maxChanges)
		}
		if send, _ := pushAhead(pipe, 1); send {
			// The next changes go while the server commits these.
			pre.wait()
			if pre.err == nil {
				if send, pull := pushAhead(pipe, len(pre.changes)); send {
					var stored []byte
					if pull {
						var err error
						if stored, err = r.loadCursor(); err != nil {
							return res, err
						}
					} else {
						stored = cursor
					}
					ahead := r.launchAhead(ctx, cur, pre.changes[:min(len(pre.changes), maxChanges)], pull, stored)
					queue = append(queue, ahead)
					// And the changes after those, while both are on
					// the wire.
					pre, aheadPre = nil, r.prefetch(ahead.changes, maxChanges)
				}
			}
		}
		resp, w, err := cur.wait()
		pre.wait()
		r.noteAttempt(cur.wire, resp, err)
		if err != nil && cur.pipelined && ctx.Err() == nil {
			// A request sent ahead failed: from here on, one at a time
			// from the first unacknowledged change.
			r.log.Info("pipelined sync request failed; going on one at a time", "err", err)
			dropAhead()
			continue
		}
		if wait, ok := r.retryWait(err); ok && waits < maxRetryWaits {
			// The server asked us to slow down: wait as told (bounded)
			// and go on, rather than failing a long bootstrap.
			dropAhead()
			waits++
			res.RateLimited++
			r.log.Info("server asks to wait", "wait", wait, "code", problemCode(err))
			if err := sleep(ctx, wait); err != nil {
				return res, err
			}
			continue
		}
		if p := (*api.Problem)(nil); errors.As(err, &p) && p.Code == api.CodeBodyTooLarge && len(changes) > 0 {
			// The changes sent are too big for the server. Send fewer;
			// a single change too big is split in two; a single op too
			// big can never go and is set aside in Rejected, so that it
			// does not hold up every later change. Each step leaves less
			// to send, so this ends.
			dropAhead()
			switch {
			case len(changes) > 1:
				maxChanges = max(1, len(changes)/2)
				r.shrinkRequests(false, true)
			case changes[0].n > 1:
				if err := r.splitChange(changes[0].Seq); err != nil {
					return res, err
				}
				maxChanges = 1
			default:
				c, err := changes[0].change()
				if err != nil {
					return res, err
				}
				rj, err := r.setAsideChange(c, p.Code, p.Detail)
				if err != nil {
					return res, err
				}
				res.Rejected = append(res.Rejected, rj...)
				r.setStatus(func(s *Status) { s.Pending = max(0, s.Pending-len(rj)) })
			}
			continue
		}
		if err != nil {
			if pull, push := sizeSuspect(err); (pull || push) && ctx.Err() == nil {
				// Size is the likely cause (a timeout on a slow link, a
				// body or reply too big): ask for less next time, so that
				// a page that cannot cross the link in time does not
				// block sync forever. Other failures (a dropped
				// connection, a server error) say nothing about size and
				// leave it alone.
				r.shrinkRequests(pull, push)
			}
			return res, err
		}
		if resp.Wipe {
			dropAhead()
			return res, r.wipe(ctx)
		}
		waits = 0
		r.growRequests()
		if stale, err := r.afterSync(resp); err != nil || stale { // epoch.go: a restored server
			if err != nil {
				return res, err
			}
			dropAhead()
			continue
		}
		if !cur.pulls() {
			resp.More = false // a push-only reply holds no page
		}
		if cur.pipelined && len(changes) > 0 {
			pipelinedGaps(resp.Results, changes[0].Seq)
		}
		if len(queue) <= 1 && !serial {
			// The next push goes now, while this reply is stored
			// (pipeline.go, pushNext): after the one ahead (three in
			// flight), or after this one if none is.
			last, lastPre := cur, pre
			if len(queue) == 1 {
				last, lastPre = queue[0], aheadPre
			}
			pipe.orders = r.pipelines.Load()&capOrders != 0 // this reply's word
			pipe.probing, pipe.ahead, pipe.aheadPushed, pipe.aheadPulls = r.hw.probe, len(queue) == 1, len(last.changes), last.pulls()
			acksAll := replyAcksAll(resp, changes)
			if send, _ := pushNext(pipe, acksAll, 1); send {
				lastPre.wait()
				if lastPre != nil && lastPre.err == nil {
					if send, pull := pushNext(pipe, acksAll, len(lastPre.changes)); send {
						stored := last.req.Cursor // never read: push-only
						if pull {
							if stored, err = r.loadCursor(); err != nil {
								return res, err
							}
						}
						nf := r.launchAhead(ctx, last, lastPre.changes[:min(len(lastPre.changes), maxChanges)], pull, stored)
						queue = append(queue, nf)
						pre, aheadPre = nil, r.prefetch(nf.changes, maxChanges)
					}
				}
			}
		}
		if len(queue) == 0 && !serial {
			if empty, err := r.outboxEmpty(); err == nil && pullAhead(pipe, resp, empty) {
				// The next page is asked for while this one is stored.
				queue = append(queue, r.launchAhead(ctx, cur, nil, true, resp.Cursor))
			}
		}
		res.Rounds++
		res.BytesSent += int64(w.sent)
		res.BytesReceived += int64(w.received)
		if len(resp.Snapshot) > 0 {
			// Also a bootstrap resumed after an interrupted Sync.
			res.Bootstrapped = true
		}
		r.adjustClock(resp.Clock)
		out, err := r.storeReplyOf(changes, resp, !cur.pulls())
		if errors.Is(err, badger.ErrTxnTooBig) && pullLimit > 1 {
			// The page did not fit one local transaction: nothing was
			// stored; ask again for a smaller page. Changes sent are
			// resent and come back as duplicates.
			dropAhead()
			pullLimit /= 2
			r.log.Info("pulled page too big for one transaction; retrying smaller", "pull_limit", pullLimit)
			continue
		}
		if err != nil {
			return res, err
		}
		if len(queue) > 0 && !aheadStands(out, len(changes)) {
			dropAhead()
		}
		res.Pushed += len(out.Acked)
		res.PushedOps += out.AckedOps
		res.Pulled += len(resp.Changes)
		for _, pc := range resp.Changes {
			res.PulledOps += pc.Ops.Len()
		}
		res.Snapshot += len(resp.Snapshot)
		res.Purged += len(resp.Purged)
		res.Changed += len(out.Changed)
		res.Rejected = append(append(res.Rejected, out.Rejections...), out.Unstored...)
		r.setStatus(func(s *Status) {
			s.Pending -= out.AckedOps + out.SetAsideOps + out.DroppedOps
			if s.Pending < 0 {
				s.Pending = 0
			}
			s.Bootstrapping = res.Bootstrapped && resp.More
			if res.Bootstrapped {
				s.RecordsReceived = res.Snapshot
			}
		})
		if len(out.Changed) > 0 {
			r.notify(out.Changed)
		}
		if r.opts.OnProgress != nil {
			r.opts.OnProgress(Progress{Round: res.Rounds, Bootstrapping: res.Bootstrapped && resp.More,
				Snapshot: res.Snapshot, Pulled: res.Pulled, Pending: r.Status().Pending})
		}
		if out.Refused != nil {
			return res, out.Refused
		}
		if out.Gap != 0 {
			resendFrom = out.Gap
		}
		if n, ok := r.usable(pre, changes, out, maxChanges); ok && len(queue) == 0 {
			next = n
		}
		// A round made progress if anything was acknowledged or received,
		// or if the cursor moved: a server may step over entries it does
		// not send (the device's own) and answer with an empty page marked
		// more. Only a round that changes nothing at all is idle.
		progressed := len(out.Acked) > 0 || len(out.SetAside) > 0 || len(resp.Changes) > 0 || len(resp.Snapshot) > 0 || len(resp.Purged) > 0 ||
			(cur.pulls() && !bytes.Equal(resp.Cursor, cursor))
		if progressed {
			idle = 0
		} else if idle++; idle >= 3 && (len(changes) > 0 || resp.More) {
			return res, fmt.Errorf("client: sync makes no progress after %d rounds (outbox %d changes, more=%v)", idle, len(changes), resp.More)
		}
		empty, err := r.outboxEmpty()
		if err != nil {
			return res, err
		}
		if syncDone(empty, resp, cur.pulls(), len(queue) > 0) {
			return res, nil
		}
	}
}

// packPush packs changes into blocks of at most api.MaxPackedBlock bytes:
// one per change, or a change's ops in several consecutive blocks under
// its seq when it is bigger. ok is false (send the changes plain) when a
// change does not pack or its pieces still do not fit.
func packPush(changes []api.Change) ([][]byte, bool) {
	var blocks [][]byte
	for i := range changes {
		c := &changes[i]
		if n := packedGuess(c); n > api.MaxPackedBlock {
			// Clearly too big for one block (a big write sealed alone):
			// packed straight in pieces, not packed whole first only to
			// find that out.
			if pieces, ok := packPieces(c, n); ok {
				blocks = append(blocks, pieces...)
				continue
			}
		}
		b, err := api.PackPush(changes[i : i+1])
		if err != nil {
			return nil, false
		}
		if len(b) <= api.MaxPackedBlock {
			blocks = append(blocks, b)
			continue
		}
		pieces, ok := packPieces(c, len(b))
		if !ok {
			return nil, false
		}
		blocks = append(blocks, pieces...)
	}
	return blocks, true
}

// packPieces packs c's ops in consecutive blocks under its seq: twice as
// many as size (the packed size of all of them) needs, cut where their
// estimated sizes (opsSize) split evenly, a piece that still does not fit
// cut in two again. ok is false if a single op does not fit.
func packPieces(c *api.Change, size int) ([][]byte, bool) {
	pieces := 2 * ((size + api.MaxPackedBlock - 1) / api.MaxPackedBlock)
	ops := c.Ops
	total := opsSize(ops)
	var blocks [][]byte
	start, acc := 0, 0
	for i := range ops {
		acc += opsSize(ops[i : i+1])
		// Cut after op i once the pieces so far hold their share.
		if i == len(ops)-1 || acc*pieces >= total*(len(blocks)+1) {
			bs, ok := packSplit(c.Seq, ops[start:i+1], nil)
			if !ok {
				return nil, false
			}
			blocks = append(blocks, bs...)
			start = i + 1
		}
	}
	return blocks, true
}

// packSplit appends to blocks ops packed under seq in one block, or if
// that is too big, in two halves of about equal estimated size, each cut
// again as needed.
func packSplit(seq uint64, ops []crdt.Op, blocks [][]byte) ([][]byte, bool) {
	b, err := api.PackPush([]api.Change{{Seq: seq, Ops: ops}})
	if err != nil {
		return nil, false
	}
	if len(b) <= api.MaxPackedBlock {
		return append(blocks, b), true
	}
	if len(ops) < 2 {
		return nil, false
	}
	half, acc, total := 1, 0, opsSize(ops)
	for ; half < len(ops)-1; half++ {
		if acc += opsSize(ops[half-1 : half]); 2*acc >= total {
			break
		}
	}
	blocks, ok := packSplit(seq, ops[:half], blocks)
	if !ok {
		return nil, false
	}
	return packSplit(seq, ops[half:], blocks)
}

// packSample is how many of a big change's first ops packedGuess packs.
const packSample = 128

// packedGuess guesses the packed size of a change of many ops from that
// of its first packSample ops (0 for a change of fewer: pack it whole).
// The first ops carry most of the block's string table, so the guess
// tends to be high.
func packedGuess(c *api.Change) int {
	if len(c.Ops) <= 4*packSample {
		return 0
	}
	b, err := api.PackPush([]api.Change{{Seq: c.Seq, Ops: c.Ops[:packSample]}})
	if err != nil {
		return 0 // the whole change fails to pack too: said there
	}
	return len(b) * len(c.Ops) / packSample
}

// maxRetryWaits bounds the consecutive waits one Sync makes when the
// server keeps asking it to come back later.
const maxRetryWaits = 10

// retryWait reports whether err is the server asking the device to come
// back later (rate_limited, or unavailable with a Retry-After), and how
// long to wait: what it asked, at least 100 ms, at most
// Options.MaxRetryWait, with jitter.
func (r *Replica) retryWait(err error) (time.Duration, bool) {
	var p *api.Problem
	if err == nil || !errors.As(err, &p) {
		return 0, false
	}
	wait := p.RetryAfter()
	switch {
	case p.Code == api.CodeRateLimited:
		if wait <= 0 {
			wait = time.Second
		}
	case p.Code == api.CodeUnavailable && wait > 0:
	default:
		return 0, false
	}
	return jitter(min(max(wait, 100*time.Millisecond), r.opts.MaxRetryWait)), true
}

// requestSize returns the pull page size and the number of changes to push
// per request: the configured ones, or less after network failures.
func (r *Replica) requestSize() (pullLimit, maxChanges int) {
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	if r.pullLimit == 0 {
		r.pullLimit, r.maxChanges = r.sizes.PullLimit, r.sizes.MaxChangesPerRequest
	}
	return r.pullLimit, r.maxChanges
}

// sizeSuspect reports whether err suggests a request was too big: the
// pulled page (pull) or the pushed changes (push). A timeout suggests
// either; body_too_large the push; a reply over MaxResponseBytes the pull.
// Anything else (refused or reset connections, cut replies, server errors)
// does not.
func sizeSuspect(err error) (pull, push bool) {
	var p *api.Problem
	var ne net.Error
	switch {
	case errors.As(err, &p):
		return false, p.Code == api.CodeBodyTooLarge
	case errors.Is(err, errReplyTooLarge):
		return true, false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return true, true
	}
	return false, false
}

// shrinkRequests halves the pull page size (pull) and the changes pushed
// per request (push) after a failure that points at size, down to pages of
// 10 items and one change.
func (r *Replica) shrinkRequests(pull, push bool) {
	r.requestSize()
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	if pull {
		r.pullLimit = max(min(10, r.sizes.PullLimit), r.pullLimit/2)
	}
	if push {
		r.maxChanges = max(1, r.maxChanges/2)
	}
	r.log.Info("request likely too big; smaller requests", "pull_limit", r.pullLimit, "changes", r.maxChanges)
}

// growRequests doubles the request sizes after a success, back up to the
// configured ones.
func (r *Replica) growRequests() {
	r.requestSize()
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	r.pullLimit = min(r.sizes.PullLimit, r.pullLimit*2)
	r.maxChanges = min(r.sizes.MaxChangesPerRequest, r.maxChanges*2)
}
