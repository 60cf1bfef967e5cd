package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

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
}

// Progress reports a Sync in progress, after each stored page.
type Progress struct {
	Round         int
	Bootstrapping bool
	Snapshot      int // snapshot records received so far in this Sync
	Pulled        int // pulled changes received so far in this Sync
	Pending       int // ops still in the outbox
}

// Rejection is one pushed op the server quarantined or refused. The change
// that carried it was acknowledged and left the outbox; the rejection is
// kept until Dismiss, so nothing is dropped silently.
type Rejection struct {
	Seq         uint64
	Index       int
	Op          crdt.Op
	Code        api.Code
	Detail      string
	Quarantined bool
	At          time.Time
}

const (
	gzipThreshold = 16 << 10
	// maxChangeBytes caps the estimated encoded size of one sealed change
	// (a single write bigger than that is sealed alone), and
	// maxRequestBytes that of the changes pushed in one request, well under
	// the server's body limits.
	maxChangeBytes  = 1 << 20
	maxRequestBytes = 4 << 20
)

// opsSize estimates the encoded size of ops.
func opsSize(ops []crdt.Op) int {
	n := 0
	for i := range ops {
		op := &ops[i]
		n += 40 + len(op.Value) + len(op.Team) + len(op.Collection) + len(op.Record) + len(op.Field) + 26*len(op.Pred)
	}
	return n
}

// Sync pushes the outbox and pulls until the outbox is empty and the server
// has nothing more, one POST /v1/sync round trip at a time. It may be
// interrupted at any point: an acknowledged change leaves the outbox only in
// the same local transaction that stores the reply's pulled page and
// cursor, so a request lost at any byte is simply repeated (the server
// dedupes changes by seq). Only one Sync runs at a time.
func (r *Replica) Sync(ctx context.Context) (SyncResult, error) {
	if r.server == "" {
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
	}
	return res, err
}

func (r *Replica) sync(ctx context.Context) (SyncResult, error) {
	var res SyncResult
	pullLimit, maxChanges := r.requestSize()
	var resendFrom uint64
	idle := 0
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := r.seal(); err != nil {
			return res, err
		}
		changes, err := r.loadChanges(resendFrom, maxChanges)
		if err != nil {
			return res, err
		}
		resendFrom = 0
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
			Changes:   changes,
			Cursor:    cursor,
			PullLimit: pullLimit,
		}
		resp, w, err := r.syncRequest(ctx, req)
		if err != nil {
			var p *api.Problem
			isProblem := errors.As(err, &p)
			if isProblem && p.Code == api.CodeBodyTooLarge || !isProblem && ctx.Err() == nil && !errors.Is(err, ErrSignedOut) {
				// The network failed (a timeout on a slow link, say) or
				// the body was too big: ask for less next time, so that
				// a page that cannot cross the link in time does not
				// block sync forever.
				r.shrinkRequests()
			}
			return res, err
		}
		r.growRequests()
		res.Rounds++
		res.BytesSent += int64(w.sent)
		res.BytesReceived += int64(w.received)
		if len(resp.Snapshot) > 0 {
			// Also a bootstrap resumed after an interrupted Sync.
			res.Bootstrapped = true
		}
		r.adjustClock(resp.Clock)
		out, err := r.applyReply(changes, resp, res.Bootstrapped)
		if errors.Is(err, badger.ErrTxnTooBig) && pullLimit > 1 {
			// The page did not fit one local transaction: nothing was
			// stored; ask again for a smaller page. Changes sent are
			// resent and come back as duplicates.
			pullLimit /= 2
			r.log.Info("pulled page too big for one transaction; retrying smaller", "pull_limit", pullLimit)
			continue
		}
		if err != nil {
			return res, err
		}
		res.Pushed += out.acked
		res.PushedOps += out.ackedOps
		res.Pulled += len(resp.Changes)
		for _, pc := range resp.Changes {
			res.PulledOps += pc.Ops.Len()
		}
		res.Snapshot += len(resp.Snapshot)
		res.Purged += len(resp.Purged)
		res.Changed += len(out.changed)
		res.Rejected = append(res.Rejected, out.rejected...)
		r.setStatus(func(s *Status) {
			s.Pending -= out.ackedOps
			if s.Pending < 0 {
				s.Pending = 0
			}
			s.Bootstrapping = res.Bootstrapped && resp.More
			if res.Bootstrapped {
				s.RecordsReceived = res.Snapshot
			}
		})
		if len(out.changed) > 0 {
			r.notify(out.changed)
		}
		if r.opts.OnProgress != nil {
			r.opts.OnProgress(Progress{Round: res.Rounds, Bootstrapping: res.Bootstrapped && resp.More,
				Snapshot: res.Snapshot, Pulled: res.Pulled, Pending: r.Status().Pending})
		}
		if out.refused != nil {
			return res, out.refused
		}
		if out.gap != 0 {
			resendFrom = out.gap
		}
		progressed := out.acked > 0 || len(resp.Changes) > 0 || len(resp.Snapshot) > 0 || len(resp.Purged) > 0
		if progressed {
			idle = 0
		} else if idle++; idle >= 3 && (len(changes) > 0 || resp.More) {
			return res, fmt.Errorf("client: sync makes no progress after %d rounds (outbox %d changes, more=%v)", idle, len(changes), resp.More)
		}
		empty, err := r.outboxEmpty()
		if err != nil {
			return res, err
		}
		if empty && !resp.More {
			return res, nil
		}
	}
}

// requestSize returns the pull page size and the number of changes to push
// per request: the configured ones, or less after network failures.
func (r *Replica) requestSize() (pullLimit, maxChanges int) {
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	if r.pullLimit == 0 {
		r.pullLimit, r.maxChanges = r.opts.PullLimit, r.opts.MaxChangesPerRequest
	}
	return r.pullLimit, r.maxChanges
}

// shrinkRequests halves the request sizes after a network failure, down to
// pages of 10 items and one change.
func (r *Replica) shrinkRequests() {
	r.requestSize()
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	r.pullLimit = max(min(10, r.opts.PullLimit), r.pullLimit/2)
	r.maxChanges = max(1, r.maxChanges/2)
	r.log.Info("network failure; smaller requests", "pull_limit", r.pullLimit, "changes", r.maxChanges)
}

// growRequests doubles the request sizes after a success, back up to the
// configured ones.
func (r *Replica) growRequests() {
	r.requestSize()
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	r.pullLimit = min(r.opts.PullLimit, r.pullLimit*2)
	r.maxChanges = min(r.opts.MaxChangesPerRequest, r.maxChanges*2)
}

// reading returns the clock's current reading for a request without
// issuing a timestamp: a request must not advance the HLC, or a tablet whose
// clock is hours fast would be stuck hours ahead even after the server's
// reply corrects its offset.
func (r *Replica) reading() crdt.Timestamp {
	return max(r.clock.Last(), crdt.MakeTimestamp(r.now().UnixMilli(), 0))
}

// seal groups unsealed writes into numbered changes, oldest first, until
// enough changes wait to fill a request. A sealed change is written once and
// never changed: the server dedupes by seq, so a seq must always carry the
// same ops.
func (r *Replica) seal() error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for {
		more := false
		err := r.db.Update(func(txn *badger.Txn) error {
			sealed := 0
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefChange})
			for it.Rewind(); it.Valid(); it.Next() {
				sealed++
			}
			it.Close()
			if sealed >= r.opts.MaxChangesPerRequest {
				return nil
			}
			v, err := get(txn, keyNextSeq)
			if err != nil {
				return err
			}
			next := u64(v) + 1
			var cur api.Change
			var keys [][]byte
			curBytes := 0
			made := 0
			flush := func() error {
				if len(cur.Ops) == 0 {
					return nil
				}
				cur.Seq = next
				b, err := encodeChange(&cur)
				if err != nil {
					return err
				}
				if err := txn.Set(u64Key(prefChange, next), b); err != nil {
					return err
				}
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				next++
				made++
				cur, keys, curBytes = api.Change{}, nil, 0
				return nil
			}
			it = txn.NewIterator(badger.IteratorOptions{Prefix: prefPending, PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if sealed+made >= r.opts.MaxChangesPerRequest || made >= 4 {
					more = sealed+made < r.opts.MaxChangesPerRequest
					break
				}
				var g *api.Change
				if err := it.Item().Value(func(v []byte) error {
					var err error
					g, err = decodeChange(v)
					return err
				}); err != nil {
					return err
				}
				if len(cur.Ops) > 0 && (len(cur.Ops)+len(g.Ops) > r.opts.MaxOpsPerChange || curBytes+opsSize(g.Ops) > maxChangeBytes) {
					if err := flush(); err != nil {
						return err
					}
					if sealed+made >= r.opts.MaxChangesPerRequest || made >= 4 {
						more = sealed+made < r.opts.MaxChangesPerRequest
						break
					}
				}
				cur.Ops = append(cur.Ops, g.Ops...)
				curBytes += opsSize(g.Ops)
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			if err := flush(); err != nil {
				return err
			}
			return txn.Set(keyNextSeq, u64Bytes(next-1))
		})
		if err != nil {
			return fmt.Errorf("client: seal outbox: %w", err)
		}
		if !more {
			return nil
		}
	}
}

var errFull = errors.New("request full")

// loadChanges returns up to maxChanges sealed changes with seq >=
// from, in seq order, and at most maxRequestBytes of them after the first.
func (r *Replica) loadChanges(from uint64, maxChanges int) ([]api.Change, error) {
	var out []api.Change
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefChange, PrefetchValues: true})
		defer it.Close()
		size := 0
		for it.Seek(u64Key(prefChange, from)); it.Valid() && len(out) < maxChanges; it.Next() {
			err := it.Item().Value(func(v []byte) error {
				if len(out) > 0 && size+len(v) > maxRequestBytes {
					return errFull
				}
				c, err := decodeChange(v)
				if err != nil {
					return err
				}
				out = append(out, *c)
				size += len(v)
				return nil
			})
			if err == errFull {
				break
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: load outbox: %w", err)
	}
	return out, nil
}

func (r *Replica) loadCursor() ([]byte, error) {
	var c []byte
	err := r.view(func(txn *badger.Txn) error {
		var err error
		c, err = get(txn, keyCursor)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: load cursor: %w", err)
	}
	return c, nil
}

func (r *Replica) outboxEmpty() (bool, error) {
	empty := true
	err := r.view(func(txn *badger.Txn) error {
		for _, p := range [][]byte{prefPending, prefChange} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
			it.Rewind()
			if it.Valid() {
				empty = false
			}
			it.Close()
		}
		return nil
	})
	return empty, err
}

// eachOutboxChange calls fn with every change in the outbox: the sealed
// changes in seq order (sealed true), then the write groups not yet sealed
// into a change, in write order. It stops at the first error.
func eachOutboxChange(txn *badger.Txn, fn func(c *api.Change, sealed bool) error) error {
	for _, prefix := range [][]byte{prefChange, prefPending} {
		sealed := bytes.Equal(prefix, prefChange)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				c, err := decodeChange(v)
				if err != nil {
					return err
				}
				return fn(c, sealed)
			})
			if err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
	}
	return nil
}

// OutboxChanges returns the sealed changes waiting for acknowledgement, in
// seq order, and the number of ops in writes not yet sealed into a change.
func (r *Replica) OutboxChanges(ctx context.Context) ([]api.Change, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var out []api.Change
	unsealed := 0
	err := r.view(func(txn *badger.Txn) error {
		return eachOutboxChange(txn, func(c *api.Change, sealed bool) error {
			if sealed {
				out = append(out, *c)
			} else {
				unsealed += len(c.Ops)
			}
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("client: read outbox: %w", err)
	}
	return out, unsealed, nil
}

type applied struct {
	acked, ackedOps int
	changed         []Ref
	rejected        []Rejection
	gap             uint64 // server's expected seq after a seq gap
	refused         error
}

// applyReply stores a decoded reply in one transaction: acknowledged
// changes leave the outbox, rejected ops are kept, the pulled snapshot
// records and changes are merged, purged records removed, and the cursor
// and clock saved.
func (r *Replica) applyReply(sent []api.Change, resp *api.SyncResponse, bootstrapping bool) (applied, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	var out applied
	bySeq := map[uint64]*api.Change{}
	for i := range sent {
		bySeq[sent[i].Seq] = &sent[i]
	}
	now := r.opts.Wall()
	err := r.db.Update(func(txn *badger.Txn) error {
		out = applied{}
		var lowest uint64
		if len(sent) > 0 {
			lowest = sent[0].Seq
		}
		for _, cr := range resp.Results {
			ch, ok := bySeq[cr.Seq]
			if !ok {
				r.log.Warn("server reported a change not sent", "seq", cr.Seq)
				continue
			}
			switch cr.Status {
			case api.ChangeApplied, api.ChangeDuplicate:
				if err := txn.Delete(u64Key(prefChange, cr.Seq)); err != nil {
					return err
				}
				out.acked++
				out.ackedOps += len(ch.Ops)
				for _, or := range cr.Ops {
					rj := Rejection{Seq: cr.Seq, Index: or.Index, Code: or.Code, Detail: or.Detail, Quarantined: or.Quarantined, At: now}
					if or.Index >= 0 && or.Index < len(ch.Ops) {
						rj.Op = ch.Ops[or.Index]
					}
					b, err := msgpack.Marshal(&rj)
					if err != nil {
						return err
					}
					key := append(u64Key(prefReject, cr.Seq), byte(or.Index>>24), byte(or.Index>>16), byte(or.Index>>8), byte(or.Index))
					if err := txn.Set(key, b); err != nil {
						return err
					}
					out.rejected = append(out.rejected, rj)
				}
			case api.ChangeRefused:
				if cr.Code == api.CodeSeqGap {
					if cr.Expected < lowest {
						// The server lacks changes this replica no longer
						// holds: nothing can repair that here.
						out.refused = fmt.Errorf("%w: seq %d: server expects seq %d, outbox starts at %d: %w",
							ErrRefused, cr.Seq, cr.Expected, lowest, api.NewProblem(cr.Code, "sequence gap"))
					} else if out.gap == 0 || cr.Expected < out.gap {
						out.gap = cr.Expected
					}
					continue
				}
				if out.refused == nil {
					out.refused = fmt.Errorf("%w: seq %d: %w", ErrRefused, cr.Seq, api.NewProblem(cr.Code, fmt.Sprintf("change %d refused", cr.Seq)))
				}
			default:
				r.log.Warn("unknown change status", "seq", cr.Seq, "status", cr.Status)
			}
		}

		touched := map[Ref]*crdt.Record{}
		before := map[Ref][]byte{} // stored encoding, to skip unchanged records
		load := func(ref Ref) (*crdt.Record, error) {
			if rec, ok := touched[ref]; ok {
				return rec, nil
			}
			raw, err := get(txn, recordKey(ref))
			if err != nil {
				return nil, err
			}
			rec := crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
			if raw != nil {
				if rec, err = crdt.UnmarshalRecord(raw); err != nil {
					return nil, fmt.Errorf("stored record %s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, err)
				}
				before[ref] = raw
			}
			touched[ref] = rec
			return rec, nil
		}
		batches := map[*crdt.Record]*crdt.Batch{} // pulled ops, merged per field at once
		var newest crdt.Timestamp
		for i, raw := range resp.Snapshot {
			if len(raw) == 0 {
				continue
			}
			// Bounded and validated: these are bytes from outside.
			s, err := raw.Record()
			if err != nil {
				return fmt.Errorf("pulled snapshot record %d: %w", i, err)
			}
			newest = max(newest, s.MaxTime())
			ref := Ref{Team: s.Team, Collection: s.Collection, ID: s.ID}
			rec, err := load(ref)
			if err != nil {
				return err
			}
			if err := rec.Merge(s); err != nil {
				r.log.Warn("pulled snapshot record does not merge; skipped", "ref", ref, "err", err)
			}
		}
		for ci, pc := range resp.Changes {
			// Bounded and validated: these are bytes from outside.
			ops, err := pc.Ops.Ops()
			if err != nil {
				return fmt.Errorf("pulled change %d: %w", ci, err)
			}
			for i := range ops {
				op := &ops[i]
				newest = max(newest, op.ID.Time)
				ref := Ref{Team: op.Team, Collection: op.Collection, ID: op.Record}
				rec, err := load(ref)
				if err != nil {
					return err
				}
				if err := batchFor(batches, rec).Add(op); err != nil {
					r.log.Warn("pulled op does not apply; skipped", "op", op.ID, "ref", ref, "err", err)
				}
			}
		}
		flushBatches(batches)
		if newest != 0 {
			// The server's clock, already merged, is past these; this
			// only matters for a server that does not say so.
			if err := r.clock.Update(newest); err != nil {
				r.log.Warn("pulled op from the future not adopted by the clock", "err", err)
			}
		}
		for ref, rec := range touched {
			if len(rec.Fields) == 0 {
				continue
			}
			b, err := crdt.MarshalRecord(rec)
			if err != nil {
				return err
			}
			if bytes.Equal(b, before[ref]) {
				continue // e.g. the device's own ops coming back
			}
			if err := txn.Set(recordKey(ref), b); err != nil {
				return err
			}
			out.changed = append(out.changed, ref)
		}
		for _, p := range resp.Purged {
			if err := txn.Delete(recordKey(p)); err != nil {
				return err
			}
			out.changed = append(out.changed, p)
		}
		if err := txn.Set(keyCursor, resp.Cursor); err != nil {
			return err
		}
		if err := txn.Set(keyClock, u64Bytes(uint64(r.clock.Last()))); err != nil {
			return err
		}
		if err := txn.Set(keyOffset, u64Bytes(uint64(int64(r.ClockOffset())))); err != nil {
			return err
		}
		return txn.Set(keySuccess, u64Bytes(uint64(now.UnixMilli())))
	})
	if err != nil {
		return applied{}, fmt.Errorf("client: store sync reply: %w", err)
	}
	return out, nil
}

// adjustClock applies the clock rule (see the package doc): if the device's
// wall clock disagrees with the server's by more than ClockTolerance, keep
// the difference as an offset; then merge the server's HLC.
func (r *Replica) adjustClock(server crdt.Timestamp) {
	if server == 0 {
		return
	}
	diff := server.Time().Sub(r.opts.Wall())
	r.offsetMu.Lock()
	old := r.offset
	if diff > r.opts.ClockTolerance || diff < -r.opts.ClockTolerance {
		r.offset = diff
	} else {
		r.offset = 0
	}
	off := r.offset
	r.offsetMu.Unlock()
	if off != old {
		r.log.Info("clock offset from server", "offset", off)
	}
	if err := r.clock.Update(server); err != nil {
		r.log.Warn("server clock not adopted", "err", err)
	}
}

// Rejected returns the pushed ops the server quarantined or refused, oldest
// first, until they are dismissed.
func (r *Replica) Rejected(ctx context.Context) ([]Rejection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Rejection
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefReject, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var rj Rejection
			if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &rj) }); err != nil {
				return err
			}
			out = append(out, rj)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: read rejections: %w", err)
	}
	return out, nil
}

// DismissRejected forgets the rejections of one change (all if seq is 0),
// once the app has shown them.
func (r *Replica) DismissRejected(ctx context.Context, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	prefix := prefReject
	if seq != 0 {
		prefix = u64Key(prefReject, seq)
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed() {
		return ErrClosed
	}
	return r.db.DropPrefix(prefix)
}

// syncRequest sends one sync request with the stored access token,
// refreshing it once if the server says it expired.
func (r *Replica) syncRequest(ctx context.Context, req *api.SyncRequest) (*api.SyncResponse, wire, error) {
	body, err := encodeRequest(req)
	if err != nil {
		return nil, wire{}, err
	}
	for attempt := 0; ; attempt++ {
		tok, err := r.accessToken()
		if err != nil {
			return nil, wire{}, err
		}
		resp, w, err := r.postSync(ctx, body, tok)
		code := problemCode(err)
		switch {
		case err == nil:
			return resp, w, nil
		case (code == api.CodeTokenExpired || code == api.CodeUnauthorized) && attempt == 0:
			if err := r.refresh(ctx, tok); err != nil {
				return nil, w, err
			}
			continue
		case code == api.CodeDeviceRevoked || code == api.CodeDeviceMismatch || code == api.CodeUnauthorized ||
			code == api.CodeTokenExpired || code == api.CodeInvalidCredentials || code == api.CodeRefreshReused:
			return nil, w, r.signOut(err)
		}
		return nil, w, err
	}
}

func encodeRequest(req *api.SyncRequest) ([]byte, error) {
	b, err := marshalCompact(req)
	if err != nil {
		return nil, fmt.Errorf("client: encode sync request: %w", err)
	}
	return b, nil
}

// wire counts the body bytes of one round trip as they crossed the network
// (after compression).
type wire struct{ sent, received int }

func (r *Replica) postSync(ctx context.Context, body []byte, token string) (*api.SyncResponse, wire, error) {
	var w wire
	gz := len(body) > gzipThreshold
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(body); err != nil {
			return nil, w, err
		}
		if err := zw.Close(); err != nil {
			return nil, w, err
		}
		body = buf.Bytes()
	}
	w.sent = len(body)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, r.server+"/v1/sync", bytes.NewReader(body))
	if err != nil {
		return nil, w, fmt.Errorf("client: sync request: %w", err)
	}
	hreq.Header.Set("Content-Type", api.ContentType)
	hreq.Header.Set("Accept", api.ContentType)
	hreq.Header.Set("Authorization", "Bearer "+token)
	// Asking for gzip ourselves turns off the transport's transparent
	// decompression, so the reply's wire size can be counted.
	hreq.Header.Set("Accept-Encoding", "gzip")
	if gz {
		hreq.Header.Set("Content-Encoding", "gzip")
	}
	hresp, err := r.http.Do(hreq)
	if err != nil {
		return nil, w, fmt.Errorf("client: sync: %w", err)
	}
	defer hresp.Body.Close()
	b, err := readBounded(hresp.Body, r.opts.MaxResponseBytes)
	if err != nil {
		return nil, w, fmt.Errorf("client: sync: read reply: %w", err)
	}
	w.received = len(b)
	if strings.EqualFold(hresp.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, w, fmt.Errorf("client: sync: reply: %w", err)
		}
		if b, err = readBounded(zr, r.opts.MaxResponseBytes); err != nil {
			return nil, w, fmt.Errorf("client: sync: inflate reply: %w", err)
		}
	}
	if hresp.StatusCode != http.StatusOK {
		return nil, w, fmt.Errorf("client: sync: %w", decodeProblem(hresp, b))
	}
	var resp api.SyncResponse
	if err := unmarshalBounded(b, &resp); err != nil {
		return nil, w, fmt.Errorf("client: sync: decode reply (%d bytes): %w", len(b), err)
	}
	if resp.Protocol != 0 && resp.Protocol != api.ProtocolVersion {
		return nil, w, fmt.Errorf("client: sync: server speaks protocol %d, want %d", resp.Protocol, api.ProtocolVersion)
	}
	return &resp, w, nil
}

func readBounded(rd io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(rd, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("reply exceeds %d bytes", max)
	}
	return b, nil
}

// unmarshalBounded decodes a whole msgpack body; trailing bytes and decoder
// panics are errors.
func unmarshalBounded(b []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder panic: %v", p)
		}
	}()
	rd := bytes.NewReader(b)
	if err := msgpack.NewDecoder(rd).Decode(v); err != nil {
		return err
	}
	if rd.Len() != 0 {
		return fmt.Errorf("%d trailing bytes", rd.Len())
	}
	return nil
}

// decodeProblem turns an error reply into an *api.Problem: problem+json or
// problem+msgpack as the server sent it, or one made from the status.
func decodeProblem(resp *http.Response, body []byte) *api.Problem {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var p api.Problem
	var err error
	switch {
	case mt == api.ProblemMsgpackContentType || strings.HasSuffix(mt, "msgpack"):
		err = unmarshalBounded(body, &p)
	case strings.HasSuffix(mt, "json"):
		err = json.Unmarshal(body, &p)
	default:
		err = errors.New("not a problem")
	}
	if err != nil || p.Code == "" {
		code := api.CodeInternal
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			code = api.CodeUnauthorized
		case resp.StatusCode == http.StatusForbidden:
			code = api.CodeForbidden
		case resp.StatusCode == http.StatusNotFound:
			code = api.CodeNotFound
		case resp.StatusCode == http.StatusTooManyRequests:
			code = api.CodeRateLimited
		case resp.StatusCode == http.StatusRequestEntityTooLarge:
			code = api.CodeBodyTooLarge
		case resp.StatusCode >= 500:
			code = api.CodeUnavailable
		case resp.StatusCode >= 400:
			code = api.CodeBadRequest
		}
		detail := string(body)
		if len(detail) > 200 {
			detail = detail[:200]
		}
		np := api.NewProblem(code, detail)
		np.Status = resp.StatusCode
		return np
	}
	if p.Status == 0 {
		p.Status = resp.StatusCode
	}
	return &p
}

// unsealed returns the outbox's write groups not yet sealed into changes.
func (r *Replica) unsealed() ([]api.Change, error) {
	var out []api.Change
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefPending, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				c, err := decodeChange(v)
				if err != nil {
					return err
				}
				out = append(out, *c)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// PendingOps returns every op not yet acknowledged by the server, sealed or
// not, oldest first.
func (r *Replica) PendingOps(ctx context.Context) ([]crdt.Op, error) {
	changes, _, err := r.OutboxChanges(ctx)
	if err != nil {
		return nil, err
	}
	var ops []crdt.Op
	for _, c := range changes {
		ops = append(ops, c.Ops...)
	}
	groups, err := r.unsealed()
	if err != nil {
		return nil, fmt.Errorf("client: read outbox: %w", err)
	}
	for _, g := range groups {
		ops = append(ops, g.Ops...)
	}
	return ops, nil
}

// ApplyRemote merges ops made by other replicas and received other than by
// Sync (tools, tests, a peer). They are applied like pulled ops, are not
// added to the outbox and do not move the cursor.
func (r *Replica) ApplyRemote(ctx context.Context, ops []crdt.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed() {
		return ErrClosed
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed() {
		return ErrClosed
	}
	touched := map[Ref]*crdt.Record{}
	batches := map[*crdt.Record]*crdt.Batch{}
	err := r.db.Update(func(txn *badger.Txn) error {
		for i := range ops {
			op := &ops[i]
			ref := Ref{Team: op.Team, Collection: op.Collection, ID: op.Record}
			rec, ok := touched[ref]
			if !ok {
				var err error
				if rec, err = loadRecord(txn, ref); err != nil {
					return err
				}
				if rec == nil {
					rec = crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
				}
				touched[ref] = rec
			}
			if err := batchFor(batches, rec).Add(op); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
			if op.ID.Time > 0 {
				_ = r.clock.Update(op.ID.Time)
			}
		}
		flushBatches(batches)
		for _, rec := range touched {
			if err := putRecord(txn, rec); err != nil {
				return err
			}
		}
		return txn.Set(keyClock, u64Bytes(uint64(r.clock.Last())))
	})
	if err != nil {
		return fmt.Errorf("client: apply remote ops: %w", err)
	}
	refs := make([]Ref, 0, len(touched))
	for ref := range touched {
		refs = append(refs, ref)
	}
	r.notify(refs)
	return nil
}
