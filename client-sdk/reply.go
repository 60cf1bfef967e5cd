package client

import (
	"bytes"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// This file turns a sync reply into local writes in two steps, the way
// etcd's raft hands back a Ready for its caller to persist:
//
//   - planReply is PURE: from what it reads of local state (stored record
//     bytes, through a localReader) and the reply, it returns a replyWrites
//     value describing every write to make. It does no I/O of its own, reads
//     no clock and logs nothing; the tests call it with a map.
//   - storeReply is the thin step: it opens one Badger transaction, calls
//     planReply over it, writes what the value says, and commits.
//
// Keeping the decision pure is what lets other features (scope, epochs,
// wipe) add their rules to the plan and have them tested without a store or
// a server.

// localReader is the local state planReply may read.
type localReader interface {
	// record returns the stored encoding of ref's record, or nil.
	record(ref Ref) ([]byte, error)
}

// recordWrite is one record state to store.
type recordWrite struct {
	Ref   Ref
	Bytes []byte // crdt.MarshalRecord of the merged record
}

// note is a warning planReply wants logged: something in the reply that was
// skipped rather than failing the whole reply.
type note struct {
	Msg  string
	Args []any
}

// replyWrites is what one sync reply asks of the local store, all written in
// one transaction: the acknowledged changes leave the outbox, rejected ops
// are kept, merged records are stored, purged records removed, and the new
// cursor saved. It also carries what the sync loop needs to go on.
type replyWrites struct {
	// ReadsPacked is the reply's word that the server reads packed
	// pushes, stored for the next start.
	ReadsPacked bool
	// Pipelines is the reply's word that the server orders pipelined
	// pushes, stored for the next start (m/pipelines, pipeline.go).
	Pipelines bool
	// ReadsZstd is the reply's word (its Accept-Encoding, coding.go) that
	// the server reads zstd requests, stored for the next start so that a
	// restarted device's first push is not gzipped. It is set by
	// storeReplyOf (the header is not part of the reply planReply reads).
	ReadsZstd bool
	// Acked are the seqs of sealed changes the server acknowledged
	// (applied or duplicate); AckedOps counts their ops.
	Acked    []uint64
	AckedOps int
	// Rejections are the ops the server quarantined or refused inside
	// acknowledged changes, to keep until DismissRejected.
	Rejections []Rejection
	// SetAside are sealed changes refused for good, to replace by empty
	// changes (their ops are among Rejections); SetAsideOps counts their
	// ops.
	SetAside    []setAside
	SetAsideOps int
	// Records are the records whose state the pull changed.
	Records []recordWrite
	// Purged are the records erased on the server, to delete here.
	Purged []Ref
	// Cursor is the pull cursor to store, unless KeepCursor: the reply
	// answers a push-only request (pipeline.go) and holds no page.
	Cursor     []byte
	KeepCursor bool
	// Newest is the newest op timestamp seen in the pulled data, for the
	// clock (zero if none).
	Newest crdt.Timestamp
	// Changed lists the records changed (stored or purged), for
	// notifications.
	Changed []Ref
	// Gap is the seq the server expects after a sequence gap the replica
	// can repair by resending from there (0 if none).
	Gap uint64
	// Refused is set when the server refused a change in a way Sync cannot
	// repair by itself.
	Refused error
	// Notes are warnings to log.
	Notes []note

	// Residue rules (scope.go). Unstored are rejections reported to the
	// app but not kept (of erased or out-of-scope records); Outbox rewrites
	// or deletes outbox entries, DroppedOps counting the ops removed;
	// DropRejections are stored rejections to delete; OutOfScope are
	// records to delete; Scope, if set, is the scope to store.
	Unstored       []Rejection
	Outbox         []keyWrite
	DroppedOps     int
	DropRejections [][]byte
	OutOfScope     []Ref
	Scope          []byte
}

// planReply decides the local writes for resp, the reply to a request that
// pushed sent. now stamps new rejections. It is pure: its only input from
// the store is what it reads through rd.
func planReply(rd localReader, sent []pushChange, resp *api.SyncResponse, now time.Time) (*replyWrites, error) {
	w := &replyWrites{Cursor: resp.Cursor, ReadsPacked: resp.ReadsPacked, Pipelines: resp.Pipelines}
	if err := planResults(w, sent, resp.Results, now); err != nil {
		return nil, err
	}
	if err := planPull(w, rd, resp); err != nil {
		return nil, err
	}
	if err := planResidue(w, rd, resp); err != nil {
		return nil, err
	}
	return w, nil
}

// planResults decides what the per-change results mean for the outbox.
// The ops of a sent change are decoded only if a result needs them (a
// rejection names its op); it fails only if they do not decode.
func planResults(w *replyWrites, sent []pushChange, results []api.ChangeResult, now time.Time) error {
	bySeq := map[uint64]*pushChange{}
	for i := range sent {
		bySeq[sent[i].Seq] = &sent[i]
	}
	var lowest uint64
	if len(sent) > 0 {
		lowest = sent[0].Seq
	}
	for _, cr := range results {
		ch, ok := bySeq[cr.Seq]
		if !ok {
			w.Notes = append(w.Notes, note{"server reported a change not sent", []any{"seq", cr.Seq}})
			continue
		}
		switch cr.Status {
		case api.ChangeApplied, api.ChangeDuplicate:
			w.Acked = append(w.Acked, cr.Seq)
			w.AckedOps += ch.n
			var ops []crdt.Op
			if len(cr.Ops) > 0 {
				var err error
				if ops, err = ch.decoded(); err != nil {
					return err
				}
			}
			for _, or := range cr.Ops {
				rj := Rejection{Seq: cr.Seq, Index: or.Index, Code: or.Code, Detail: or.Detail, Quarantined: or.Quarantined, At: now}
				if or.Index < 0 || or.Index >= len(ops) {
					// The op is no longer held here: an erasure or scope
					// rule took it out of the outbox after it went (in a
					// pipelined request, or one whose reply was lost),
					// and the server reports what it kept for it.
					// Reported, not stored, as for the residue rules
					// (scope.go).
					w.Unstored = append(w.Unstored, rj)
					continue
				}
				rj.Op = ops[or.Index]
				w.Rejections = append(w.Rejections, rj)
			}
		case api.ChangeRefused:
			if cr.Code == api.CodeSeqGap {
				if cr.Expected < lowest {
					// The server lacks changes this replica no longer
					// holds: nothing can repair that here.
					w.Refused = fmt.Errorf("%w: seq %d: server expects seq %d, outbox starts at %d: %w",
						ErrRefused, cr.Seq, cr.Expected, lowest, api.NewProblem(cr.Code, "sequence gap"))
				} else if w.Gap == 0 || cr.Expected < w.Gap {
					w.Gap = cr.Expected
				}
				continue
			}
			detail := fmt.Sprintf("change %d refused", cr.Seq)
			if permanentRefusal(cr.Code) {
				// Never acceptable as it is: move it aside so the changes
				// after it go through.
				w.SetAside = append(w.SetAside, setAside{Seq: cr.Seq, Code: cr.Code, Detail: detail})
				c, err := ch.change()
				if err != nil {
					return err
				}
				rj := rejectionsFor(c, cr.Code, detail, now)
				w.SetAsideOps += len(rj)
				w.Rejections = append(w.Rejections, rj...)
				continue
			}
			if w.Refused == nil {
				w.Refused = fmt.Errorf("%w: seq %d: %w", ErrRefused, cr.Seq, api.NewProblem(cr.Code, detail))
			}
		default:
			w.Notes = append(w.Notes, note{"unknown change status", []any{"seq", cr.Seq, "status", cr.Status}})
		}
	}
	return nil
}

// planPull merges the pulled snapshot records and changes into the stored
// records they touch, and lists the records to store and to purge.
func planPull(w *replyWrites, rd localReader, resp *api.SyncResponse) error {
	touched := map[Ref]*crdt.Record{}
	var order []Ref            // first-touch order, so the plan is deterministic
	before := map[Ref][]byte{} // stored encoding, to skip unchanged records
	// Snapshot states of records new to this replica, validated, stored
	// as they came unless something else in the reply touches the record:
	// merging into an empty record and encoding again would give the same
	// state at twice the cost.
	asIs := map[Ref]crdt.RecordBytes{}
	load := func(ref Ref) (*crdt.Record, error) {
		if rec, ok := touched[ref]; ok {
			delete(asIs, ref) // about to change
			return rec, nil
		}
		raw, err := rd.record(ref)
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
		order = append(order, ref)
		return rec, nil
	}
	for i, raw := range resp.Snapshot {
		if len(raw) == 0 {
			continue
		}
		// A state the replica holds byte for byte (its own records sent
		// back in a bootstrap's pages, as a device that pushed before
		// its first pull gets them) changes nothing: skipped, not decoded,
		// merged and encoded again only to be found unchanged. Stored
		// bytes were validated when stored, and their times adopted by
		// the clock then.
		var stored []byte
		var head Ref
		if team, coll, id, ok := raw.Ref(); ok {
			head = Ref{Team: team, Collection: coll, ID: id}
			if _, seen := touched[head]; !seen {
				var err error
				if stored, err = rd.record(head); err != nil {
					return err
				}
				if stored != nil && bytes.Equal(stored, raw) {
					continue
				}
			}
		}
		// Bounded and validated: these are bytes from outside.
		s, err := raw.Record()
		if err != nil {
			return fmt.Errorf("pulled snapshot record %d: %w", i, err)
		}
		w.Newest = max(w.Newest, s.MaxTime())
		skipped := len(s.Skipped) > 0
		s.DropSkipped() // the server's quarantine stays the server's (crdt.Record.DropSkipped)
		ref := Ref{Team: s.Team, Collection: s.Collection, ID: s.ID}
		if _, seen := touched[ref]; !seen && !skipped {
			if ref != head { // read above unless the head did not parse
				if stored, err = rd.record(ref); err != nil {
					return err
				}
			}
			if stored == nil {
				touched[ref] = s
				order = append(order, ref)
				asIs[ref] = raw
				continue
			}
		}
		rec, err := load(ref)
		if err != nil {
			return err
		}
		if err := rec.Merge(s); err != nil {
			w.Notes = append(w.Notes, note{"pulled snapshot record does not merge; skipped", []any{"ref", ref, "err", err}})
		}
	}
	batches := map[*crdt.Record]*crdt.Batch{} // pulled ops, merged per field at once
	for ci, pc := range resp.Changes {
		// Bounded and validated: these are bytes from outside.
		ops, err := pc.Ops.Ops()
		if err != nil {
			return fmt.Errorf("pulled change %d: %w", ci, err)
		}
		for i := range ops {
			op := &ops[i]
			w.Newest = max(w.Newest, op.ID.Time)
			ref := Ref{Team: op.Team, Collection: op.Collection, ID: op.Record}
			rec, err := load(ref)
			if err != nil {
				return err
			}
			if err := batchFor(batches, rec).Add(op); err != nil {
				w.Notes = append(w.Notes, note{"pulled op does not apply; skipped", []any{"op", op.ID, "ref", ref, "err", err}})
			}
		}
	}
	flushBatches(batches)
	for _, raw := range resp.Replace {
		rec, err := planRestated(w, rd, raw)
		if err != nil {
			return err
		}
		ref := Ref{Team: rec.Team, Collection: rec.Collection, ID: rec.ID}
		if _, err := load(ref); err != nil {
			return err
		}
		touched[ref] = rec
	}
	for _, ref := range order {
		rec := touched[ref]
		if len(rec.Fields) == 0 {
			continue
		}
		if b, ok := asIs[ref]; ok {
			w.Records = append(w.Records, recordWrite{Ref: ref, Bytes: b})
			w.Changed = append(w.Changed, ref)
			continue
		}
		b, err := crdt.MarshalRecord(rec)
		if err != nil {
			return err
		}
		if bytes.Equal(b, before[ref]) {
			continue // e.g. the device's own ops coming back
		}
		w.Records = append(w.Records, recordWrite{Ref: ref, Bytes: b})
		w.Changed = append(w.Changed, ref)
	}
	for _, p := range resp.Purged {
		w.Purged = append(w.Purged, p)
		w.Changed = append(w.Changed, p)
	}
	return nil
}

// txnReader reads local state for planReply inside a Badger transaction.
type txnReader struct{ txn *badger.Txn }

func (t txnReader) record(ref Ref) ([]byte, error) { return get(t.txn, recordKey(ref)) }

// rejectionKey is where a Rejection is stored.
func rejectionKey(seq uint64, index int) []byte {
	return append(u64Key(prefReject, seq), byte(index>>24), byte(index>>16), byte(index>>8), byte(index))
}

// storeReply is the thin step: in one transaction it plans the writes for
// resp (planReply) and makes them, then saves the clock, offset and time of
// success. Nothing is stored if any of it fails.
func (r *Replica) storeReply(sent []api.Change, resp *api.SyncResponse) (*replyWrites, error) {
	return r.storeReplyOf(fromChanges(sent), resp, false)
}

// storeReplyOf is storeReply for the reply to a request that was
// push-only (pushOnly, pipeline.go) or not: a push-only reply holds no
// page, and its cursor is not stored.
func (r *Replica) storeReplyOf(sent []pushChange, resp *api.SyncResponse, pushOnly bool) (*replyWrites, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	now := r.opts.Wall()
	var w *replyWrites
	err := r.db.Update(func(txn *badger.Txn) error {
		var err error
		if w, err = planReply(txnReader{txn}, sent, resp, now); err != nil {
			return err
		}
		w.KeepCursor = pushOnly
		w.ReadsZstd = r.zstdRequests.Load() // coding.go: from this reply's header
		return r.writeReply(txn, w, now)
	})
	if err != nil {
		return nil, fmt.Errorf("client: store sync reply: %w", err)
	}
	for _, n := range w.Notes {
		r.log.Warn(n.Msg, n.Args...)
	}
	return w, nil
}

// writeReply makes the writes w describes in txn.
func (r *Replica) writeReply(txn *badger.Txn, w *replyWrites, now time.Time) error {
	for _, seq := range w.Acked {
		if err := txn.Delete(u64Key(prefChange, seq)); err != nil {
			return err
		}
	}
	for _, sa := range w.SetAside {
		if err := putEmptyChange(txn, sa.Seq); err != nil {
			return err
		}
	}
	if err := putRejections(txn, w.Rejections); err != nil {
		return err
	}
	for _, rw := range w.Records {
		if err := txn.Set(recordKey(rw.Ref), rw.Bytes); err != nil {
			return err
		}
	}
	for _, p := range w.Purged {
		if err := txn.Delete(recordKey(p)); err != nil {
			return err
		}
	}
	if err := writeResidue(txn, w); err != nil {
		return err
	}
	if w.Newest != 0 {
		// The server's clock, already merged, is past these; this only
		// matters for a server that does not say so.
		if err := r.clock.Update(w.Newest); err != nil {
			r.log.Warn("pulled op from the future not adopted by the clock", "err", err)
		}
	}
	if !w.KeepCursor {
		if err := txn.Set(keyCursor, w.Cursor); err != nil {
			return err
		}
	}
	if err := txn.Set(keyClock, u64Bytes(uint64(r.clock.Last()))); err != nil {
		return err
	}
	if err := txn.Set(keyOffset, u64Bytes(uint64(int64(r.ClockOffset())))); err != nil {
		return err
	}
	packed := byte(0)
	if w.ReadsPacked {
		packed = 1
	}
	if err := txn.Set(keyPacked, []byte{packed}); err != nil {
		return err
	}
	zstdOK := byte(0)
	if w.ReadsZstd {
		zstdOK = 1
	}
	if err := txn.Set(keyZstd, []byte{zstdOK}); err != nil {
		return err
	}
	if err := txn.Set(keyPipeline, pipelinesByte(w.Pipelines)); err != nil { // pipeline.go
		return err
	}
	return txn.Set(keySuccess, u64Bytes(uint64(now.UnixMilli())))
}
