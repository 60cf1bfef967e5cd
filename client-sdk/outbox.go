package client

// The outbox: local writes waiting for the server. Each write appends its
// ops as one unsealed group (o/...); seal groups them into numbered,
// immutable changes (c/...); loadChanges picks the changes for a request;
// storeReply (reply.go) removes acknowledged ones and keeps rejections
// (q/...).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// Rejection is one pushed op the server quarantined or refused. Either the
// change that carried it was acknowledged and left the outbox, or the
// server refused the change (or the op alone) for good, e.g. with
// body_too_large, and it was set aside so later changes could go. The
// rejection is kept until DismissRejected, so nothing is dropped silently
// and nothing is retried forever; the op stays applied locally.
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
	// maxChangeBytes caps the estimated encoded size of one sealed change
	// (a single write bigger than that is sealed alone), and
	// maxRequestBytes that of the changes pushed in one request, well under
	// the server's body limits.
	maxChangeBytes  = 1 << 20
	maxRequestBytes = 4 << 20
	// maxRequestOps caps the ops pushed in one request (after the first
	// change), keeping a request's msgpack values (about 20 per op) well
	// under the server's default limit of 1,048,576.
	maxRequestOps = 20_000
	// packedRequestOps and packedRequestBytes replace the two above when
	// pushes go packed (7q): a packed op is a handful of bytes and no
	// msgpack values, and the server takes up to 131,072 ops a request
	// (docs/PROTOCOL.md "Packed pull encoding"). Fewer, bigger requests
	// save round trips on a big outbox.
	packedRequestOps   = 60_000
	packedRequestBytes = 12 << 20
)

// requestBounds returns the stored bytes and ops one request may push
// after its first change.
func (r *Replica) requestBounds() (bytes, ops int) {
	if r.readsPacked.Load() && !r.opts.PlainPush {
		return packedRequestBytes, packedRequestOps
	}
	return maxRequestBytes, maxRequestOps
}

// opsSize estimates the encoded size of ops.
func opsSize(ops []crdt.Op) int {
	n := 0
	for i := range ops {
		op := &ops[i]
		n += 40 + len(op.Value) + len(op.Team) + len(op.Collection) + len(op.Record) + len(op.Field) + 26*len(op.Pred)
	}
	return n
}

// sealTxnBytes bounds what the changes one seal transaction writes count
// against Badger's transaction size limit (txnBytes), well under it (15%
// of deviceMemTable: 4.8 MiB). Until issue 17's fifth pass a transaction
// sealed at most 4 changes, and a round of 8 small changes took two
// durable transactions; now it takes one (docs/benchmarks.md).
const sealTxnBytes = 2 << 20

// txnBytes is about what a value of n bytes counts against the
// transaction's size: all of it in the LSM tree, a pointer in the value
// log (deviceValueThreshold and over).
func txnBytes(v []byte) int {
	if int64(len(v)) >= deviceValueThreshold {
		return 64
	}
	return len(v) + 64
}

// seal groups unsealed writes into numbered changes, oldest first, until
// enough changes wait to fill a request. A sealed change is written once and
// never changed: the server dedupes by seq, so a seq must always carry the
// same ops.
func (r *Replica) seal() error { return r.sealFrom(0) }

// sealFrom is seal counting only the sealed changes with seq >= from
// toward a request's worth: with from past the changes of a request in
// flight, it seals the next request's changes (prefetch.go).
func (r *Replica) sealFrom(from uint64) error {
	sizes := r.RequestSizes()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for {
		more := false
		err := r.db.Update(func(txn *badger.Txn) error {
			sealed := 0
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefChange})
			for it.Seek(u64Key(prefChange, from)); it.Valid() && sealed < sizes.MaxChangesPerRequest; it.Next() {
				sealed++
			}
			it.Close()
			if sealed >= sizes.MaxChangesPerRequest {
				return nil
			}
			v, err := get(txn, keyNextSeq)
			if err != nil {
				return err
			}
			next := u64(v) + 1
			// The change being built: the blocks of its writes, copied
			// as they are stored (no op is decoded), and their counts.
			var blocks [][]byte
			var keys [][]byte
			curOps, curBytes := 0, 0
			made := 0
			inTxn := 0 // what the changes made count against the transaction's size
			flush := func() error {
				if curOps == 0 {
					return nil
				}
				b := appendEntry(nil, next, curOps, curBytes, blocks)
				if err := txn.Set(u64Key(prefChange, next), b); err != nil {
					return err
				}
				inTxn += txnBytes(b)
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				next++
				made++
				blocks, keys, curOps, curBytes = nil, nil, 0, 0
				return nil
			}
			it = txn.NewIterator(badger.IteratorOptions{Prefix: prefPending, PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if sealed+made >= sizes.MaxChangesPerRequest || inTxn >= sealTxnBytes {
					more = sealed+made < sizes.MaxChangesPerRequest
					break
				}
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				g, ops, err := parseEntry(v)
				if err != nil {
					return fmt.Errorf("outbox group %x: %w", it.Item().Key(), err)
				}
				if g.blocks == nil && len(ops) > 0 {
					// Written by an older SDK: packed now, when it
					// becomes part of a change (its ops unchanged).
					blks, err := packBlocks(ops)
					if err != nil {
						// Ops the packed form refuses, which an older
						// SDK stored unchecked: the group becomes a
						// change of its own in the msgpack form, so
						// that it goes (and the server's refusal sets
						// it aside) rather than holding up the outbox.
						if err := flush(); err != nil {
							return err
						}
						if sealed+made >= sizes.MaxChangesPerRequest || inTxn >= sealTxnBytes {
							more = sealed+made < sizes.MaxChangesPerRequest
							break
						}
						b, err := encodeChangeMsgpack(&api.Change{Seq: next, Ops: ops})
						if err != nil {
							return err
						}
						if err := txn.Set(u64Key(prefChange, next), b); err != nil {
							return err
						}
						inTxn += txnBytes(b)
						if err := txn.Delete(it.Item().KeyCopy(nil)); err != nil {
							return err
						}
						next++
						made++
						continue
					}
					g.blocks = blks
				}
				if curOps > 0 && (curOps+g.ops > sizes.MaxOpsPerChange || curBytes+g.est > maxChangeBytes) {
					if err := flush(); err != nil {
						return err
					}
					if sealed+made >= sizes.MaxChangesPerRequest || inTxn >= sealTxnBytes {
						more = sealed+made < sizes.MaxChangesPerRequest
						break
					}
				}
				blocks = append(blocks, g.blocks...)
				curOps += g.ops
				curBytes += g.est
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			if err := flush(); err != nil {
				return err
			}
			if made == 0 {
				return nil // nothing written: no commit, no sync
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
// from, in seq order, and at most the bytes and ops of requestBounds of
// them after the first. A change stored packed comes with its blocks
// under its seq (api.RepackSeq), its ops not decoded (pushchange.go).
func (r *Replica) loadChanges(from uint64, maxChanges int) ([]pushChange, error) {
	maxBytes, maxOps := r.requestBounds()
	var out []pushChange
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefChange, PrefetchValues: true})
		defer it.Close()
		size, ops := 0, 0
		for it.Seek(u64Key(prefChange, from)); it.Valid() && len(out) < maxChanges; it.Next() {
			err := it.Item().Value(func(v []byte) error {
				e, decoded, err := parseEntry(v)
				if err != nil {
					return fmt.Errorf("change %x: %w", it.Item().Key(), err)
				}
				// A request's bytes are bounded by what its ops take in
				// msgpack: the stored bytes of the msgpack form, the
				// estimate of the packed one.
				n := e.est
				if e.blocks == nil {
					n = len(v)
				}
				if len(out) > 0 && (size+n > maxBytes || ops+e.ops > maxOps) {
					return errFull
				}
				c := pushChange{Seq: e.seq, n: e.ops, est: e.est, ops: decoded}
				if e.blocks == nil {
					c.est = n
				} else if e.ops > 0 {
					if c.blocks, err = e.wireBlocks(); err != nil {
						return fmt.Errorf("change %x: %w", it.Item().Key(), err)
					}
				}
				out = append(out, c)
				size += n
				ops += e.ops
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
// not, oldest first. It reads the outbox in one transaction, so ops being
// sealed meanwhile are seen exactly once.
func (r *Replica) PendingOps(ctx context.Context) ([]crdt.Op, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ops []crdt.Op
	err := r.view(func(txn *badger.Txn) error {
		return eachOutboxChange(txn, func(c *api.Change, _ bool) error {
			ops = append(ops, c.Ops...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("client: read outbox: %w", err)
	}
	return ops, nil
}

// appendPending stores one write's ops, encoded by encodeChange, as an
// unsealed group under the next outbox index.
func (r *Replica) appendPending(txn *badger.Txn, b []byte) error {
	v, err := get(txn, keyNextOp)
	if err != nil {
		return err
	}
	n := u64(v) + 1
	if err := txn.Set(u64Key(prefPending, n), b); err != nil {
		return err
	}
	return txn.Set(keyNextOp, u64Bytes(n))
}

// sealAtWrite returns the seq under which a write of ops ops, of
// estimated size est (opsSize), is to be stored as a sealed change in its
// own transaction, or 0 if it is to be an unsealed group (appendPending).
// It is sealed as written when sealFrom would seal it alone into the
// same change: its ops fill a change (MaxOpsPerChange, or
// maxChangeBytes), so no later group could join it, and no unsealed group
// is before it, so none could either, and its seq comes next. The caller
// encodes it with that seq (encodeChange) and stores it with putSealed:
// the bytes sealFrom would have written. A big batch then costs no seal
// transaction, no rewrite of its ops and no sync when it is pushed (issue
// 17 fifth pass: the push of 100 batches of 3,000 ops sealed 14 times).
func (r *Replica) sealAtWrite(txn *badger.Txn, ops, est int) (uint64, error) {
	if ops == 0 || (ops < r.RequestSizes().MaxOpsPerChange && est < maxChangeBytes) {
		return 0, nil
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefPending})
	it.Rewind()
	unsealed := it.Valid()
	it.Close()
	if unsealed {
		return 0, nil
	}
	v, err := get(txn, keyNextSeq)
	if err != nil {
		return 0, err
	}
	return u64(v) + 1, nil
}

// putSealed stores b, a change encoded with seq from sealAtWrite, as that
// sealed change.
func putSealed(txn *badger.Txn, seq uint64, b []byte) error {
	if err := txn.Set(u64Key(prefChange, seq), b); err != nil {
		return err
	}
	return txn.Set(keyNextSeq, u64Bytes(seq))
}

// permanentRefusal reports whether a change refused as a whole with code
// can never be accepted as it is: resending it would fail the same way
// forever and hold up every later change. Such a change is set aside (see
// setAsideWrites). Other refusals keep the change in the outbox and fail
// the Sync with ErrRefused.
func permanentRefusal(code api.Code) bool {
	switch code {
	case api.CodeBodyTooLarge, api.CodeMalformedBody, api.CodeBadRequest, api.CodeInvalidOp:
		return true
	}
	return false
}

// setAside is a sealed change the server will never accept, to be moved out
// of the way: its ops become Rejections and the change is replaced by an
// empty one under the same seq, which the server applies (advancing its
// high-water mark) so the changes after it go through. The ops stay applied
// locally, like quarantined ones.
type setAside struct {
	Seq    uint64
	Code   api.Code
	Detail string
}

// rejectionsFor returns the Rejections that set c aside.
func rejectionsFor(c *api.Change, code api.Code, detail string, now time.Time) []Rejection {
	out := make([]Rejection, len(c.Ops))
	for i := range c.Ops {
		out[i] = Rejection{Seq: c.Seq, Index: i, Op: c.Ops[i], Code: code, Detail: detail, At: now}
	}
	return out
}

// putEmptyChange replaces sealed change seq by one with no ops.
func putEmptyChange(txn *badger.Txn, seq uint64) error {
	b, err := encodeChange(&api.Change{Seq: seq})
	if err != nil {
		return err
	}
	return txn.Set(u64Key(prefChange, seq), b)
}

// putRejections stores rejections until DismissRejected.
func putRejections(txn *badger.Txn, rejections []Rejection) error {
	for i := range rejections {
		rj := &rejections[i]
		b, err := msgpack.Marshal(rj)
		if err != nil {
			return err
		}
		if err := txn.Set(rejectionKey(rj.Seq, rj.Index), b); err != nil {
			return err
		}
	}
	return nil
}

// setAsideChange sets sealed change c aside now (see setAside), after the
// server refused it alone with code. It returns the rejections stored.
func (r *Replica) setAsideChange(c *api.Change, code api.Code, detail string) ([]Rejection, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	rj := rejectionsFor(c, code, detail, r.opts.Wall())
	err := r.db.Update(func(txn *badger.Txn) error {
		// Only if it is still there, unchanged.
		v, err := get(txn, u64Key(prefChange, c.Seq))
		if err != nil || v == nil {
			return err
		}
		if err := putEmptyChange(txn, c.Seq); err != nil {
			return err
		}
		return putRejections(txn, rj)
	})
	if err != nil {
		return nil, fmt.Errorf("client: set change %d aside: %w", c.Seq, err)
	}
	r.log.Warn("change refused for good; set aside in Rejected", "seq", c.Seq, "ops", len(c.Ops), "code", code, "detail", detail)
	return rj, nil
}

// splitChange replaces sealed change seq, which the server refused as too
// large when sent alone, by two changes holding the first and second half
// of its ops, and renumbers the later sealed changes up by one. This is
// safe although sealed changes are otherwise immutable: content only ever
// moves to a higher seq, so any seq the server may already have applied
// still carries ops it holds, and the server dedupes ops by ID. The ops of
// one write may end up in two changes; that is the price of getting them
// through at all.
func (r *Replica) splitChange(seq uint64) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	err := r.db.Update(func(txn *badger.Txn) error {
		v, err := get(txn, u64Key(prefChange, seq))
		if err != nil || v == nil {
			return err
		}
		c, err := decodeChange(v)
		if err != nil {
			return err
		}
		if len(c.Ops) < 2 {
			return nil
		}
		// Later changes, highest first, each up by one.
		var later []*api.Change
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefChange, PrefetchValues: true})
		for it.Seek(u64Key(prefChange, seq+1)); it.ValidForPrefix(prefChange); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				lc, err := decodeChange(v)
				later = append(later, lc)
				return err
			})
			if err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
		put := func(ch *api.Change) error {
			b, err := encodeChange(ch)
			if err != nil {
				return err
			}
			return txn.Set(u64Key(prefChange, ch.Seq), b)
		}
		for i := len(later) - 1; i >= 0; i-- {
			later[i].Seq++
			if err := put(later[i]); err != nil {
				return err
			}
		}
		half := len(c.Ops) / 2
		if err := put(&api.Change{Seq: seq, Ops: c.Ops[:half]}); err != nil {
			return err
		}
		if err := put(&api.Change{Seq: seq + 1, Ops: c.Ops[half:]}); err != nil {
			return err
		}
		next, err := get(txn, keyNextSeq)
		if err != nil {
			return err
		}
		return txn.Set(keyNextSeq, u64Bytes(u64(next)+1))
	})
	if err != nil {
		return fmt.Errorf("client: split change %d: %w", seq, err)
	}
	r.log.Info("change too large for the server; split in two", "seq", seq)
	return nil
}
