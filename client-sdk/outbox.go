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

// appendPending stores one write's ops as an unsealed group under the next
// outbox index.
func (r *Replica) appendPending(txn *badger.Txn, ops []crdt.Op) error {
	v, err := get(txn, keyNextOp)
	if err != nil {
		return err
	}
	n := u64(v) + 1
	b, err := encodeChange(&api.Change{Ops: ops})
	if err != nil {
		return err
	}
	if err := txn.Set(u64Key(prefPending, n), b); err != nil {
		return err
	}
	return txn.Set(keyNextOp, u64Bytes(n))
}
