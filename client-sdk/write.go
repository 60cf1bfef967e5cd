package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// FieldTyper is optionally implemented by a Validator to give a field's CRDT
// type, so that Create can turn a slice given for a set or log field into
// adds or appends.
type FieldTyper interface {
	FieldType(collection, field string) (crdt.FieldType, bool)
}

// NewID returns a new random record ID: 32 hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Create creates a record in where.Team's where.Collection with the given
// fields and returns its reference, with a new random ID (or where.ID if
// set; it must not exist yet). Naming team and collection in a Ref keeps
// them from being swapped by accident. Each field becomes a register write,
// except that a slice given for a field the schema types as a set or log
// becomes one add or append per element. It fails with a *ValidationError
// (ErrInvalid) if a field required on create is missing or a value is
// invalid.
func (r *Replica) Create(ctx context.Context, where Ref, fields map[string]any) (Ref, error) {
	var ref Ref
	err := r.Batch(ctx, func(b *Batch) error {
		var err error
		ref, err = b.Create(where, fields)
		return err
	})
	return ref, err
}

// CreateWithID is Create with an ID chosen by the caller. It fails if the
// record already exists locally.
func (r *Replica) CreateWithID(ctx context.Context, ref Ref, fields map[string]any) error {
	return r.Batch(ctx, func(b *Batch) error { return b.CreateWithID(ref, fields) })
}

// Set writes value to a register field, overwriting the value the user
// sees. On a field in conflict it overwrites only values this replica
// wrote itself: another author's concurrent value stays in the conflict
// until Resolve. On a clinical field in conflict Set is refused with
// ErrInConflict: the app must offer the conflict for Resolve. A nil value
// is refused (ErrInvalid): clear a field with Clear.
func (r *Replica) Set(ctx context.Context, ref Ref, field string, value any) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Set(ref, field, value) })
}

// Clear clears a register field: it writes "no value" over the value the
// user sees, with Set's conflict rule. A cleared field is left out of
// Record.Fields, as if never written, unless a concurrent write puts it in
// conflict (then Values shows nil beside the other value until Resolve).
func (r *Replica) Clear(ctx context.Context, ref Ref, field string) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Clear(ref, field) })
}

// Resolve writes value to a register field, overwriting every concurrent
// value the replica holds: it settles a conflict. On a clinical field in
// conflict only a role the schema's settled_by lists may do so (the
// signed-in user's, from Login); others get ErrResolveForbidden.
func (r *Replica) Resolve(ctx context.Context, ref Ref, field string, value any) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Resolve(ref, field, value) })
}

// Add adds elem to a set field.
func (r *Replica) Add(ctx context.Context, ref Ref, field string, elem any) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Add(ref, field, elem) })
}

// Remove removes elem from a set field: every add of it this replica has
// seen. An add made concurrently on another device survives (add wins).
func (r *Replica) Remove(ctx context.Context, ref Ref, field string, elem any) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Remove(ref, field, elem) })
}

// Append appends value to a log field.
func (r *Replica) Append(ctx context.Context, ref Ref, field string, value any) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Append(ref, field, value) })
}

// Delete deletes a record. Edits made concurrently on other devices are
// kept and reported by Get as DeleteConflicts.
func (r *Replica) Delete(ctx context.Context, ref Ref) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Delete(ref) })
}

// Restore undeletes a record.
func (r *Replica) Restore(ctx context.Context, ref Ref) error {
	return r.Batch(ctx, func(b *Batch) error { return b.Restore(ref) })
}

// Batch runs fn and stores every write it makes together: built, validated
// and applied in order, then the records and one outbox group written in a
// single fsynced Badger transaction. If fn or any of its writes fails,
// nothing is stored. One batch costs one fsync however many writes it
// holds, so an app saving a whole visit form should use one batch; batches
// made concurrently (from several goroutines) while a commit is in flight
// are stored together in the next one (group commit), each still all or
// nothing, each call returning once its batch is durable. fn must
// not call the Replica's own methods (the batch holds its write lock), and
// a batch must fit one Badger transaction (a few thousand ops).
func (r *Replica) Batch(ctx context.Context, fn func(b *Batch) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed() {
		return ErrClosed
	}
	// Group commit: the call queues its batch, and whoever takes the write
	// lock next builds and stores every queued batch in one transaction
	// and one fsync (commitBatches). A lone call is its own group; calls
	// made while a commit is in flight share the next one.
	q := &batchReq{fn: fn, done: make(chan struct{})}
	r.batchMu.Lock()
	r.batches = append(r.batches, q)
	r.batchMu.Unlock()
	r.wmu.Lock()
	r.batchMu.Lock()
	group := r.batches
	r.batches = nil
	r.batchMu.Unlock()
	if len(group) > 0 {
		r.commitBatches(group)
	}
	r.wmu.Unlock()
	<-q.done
	if q.err != nil {
		return q.err
	}
	if b := q.b; b != nil && len(b.ops) > 0 {
		r.statusMu.Lock()
		r.status.Pending += len(b.ops)
		r.statusMu.Unlock()
		r.notify(b.order)
		r.trigger()
	}
	return nil
}

// batchReq is one Batch call waiting to be committed: its fn, then what
// it built (b) or why it failed (err); done is closed when it is settled.
type batchReq struct {
	fn   func(b *Batch) error
	b    *Batch
	err  error
	done chan struct{}
}

// maxGroupBytes bounds the estimated bytes of the batches committed
// together (a batch alone may be bigger), far below what one Badger
// transaction takes. A variable for a test.
var maxGroupBytes = 1 << 20

// commitBatches builds and stores the queued batches, in order, with wmu
// held. Each batch's fn runs in one read-write transaction that holds the
// batches before it in the group, so it sees their writes; its own writes
// go in only if fn and its checks succeed, so a failing batch leaves no
// trace and does not affect the others. The group is committed (one
// fsync) when it is done or large; every caller is told only after its
// batch is durable. If a write does not fit the transaction, the batches
// written before it are committed on their own and the batch alone.
func (r *Replica) commitBatches(group []*batchReq) {
	settle := func(q *batchReq, err error) {
		if q.err == nil && err != nil {
			q.err = fmt.Errorf("client: %w", err)
		}
		close(q.done)
	}
	if r.closed() {
		for _, q := range group {
			settle(q, ErrClosed)
		}
		return
	}
	for len(group) > 0 {
		txn := r.db.NewTransaction(true)
		var pending []*batchReq // written into txn, not yet committed
		size := 0
		for len(group) > 0 && size < maxGroupBytes {
			q := group[0]
			if q.b == nil { // not built yet (a batch is built once)
				b, err := r.buildBatch(txn, q.fn)
				if err != nil {
					group = group[1:]
					settle(q, err)
					continue
				}
				q.b = b
			}
			if len(q.b.ops) == 0 {
				group = group[1:]
				settle(q, nil)
				continue
			}
			if err := r.writeBatch(txn, q.b); err != nil {
				// txn may now hold part of q's writes: drop it. The
				// batches written before q are stored on their own; q,
				// built against the state they leave, is written alone
				// in the next round, and fails alone if it still does
				// not fit.
				txn.Discard()
				if len(pending) > 0 {
					err := r.rewrite(pending)
					for _, p := range pending {
						settle(p, err)
					}
					if err != nil {
						for _, q := range group {
							settle(q, err)
						}
						return
					}
				} else {
					group = group[1:]
					settle(q, err)
				}
				pending, txn = nil, nil
				break
			}
			pending = append(pending, q)
			size += q.b.size
			group = group[1:]
		}
		if txn == nil {
			continue
		}
		var err error
		if len(pending) > 0 {
			err = txn.Commit()
		}
		txn.Discard()
		for _, q := range pending {
			settle(q, err)
		}
		// Stored (or not, and settled): the last batch's op list, cleared
		// (it holds no value after its batch), is room for the next
		// batch's (spareOps). Its Batch call reads only its length from
		// here on.
		if n := len(pending); n > 0 {
			ops := pending[n-1].b.ops
			clear(ops)
			r.spareOps = ops[:0]
		}
	}
}

// buildBatch runs fn on a Batch reading through txn and checks what it
// built; it writes nothing.
func (r *Replica) buildBatch(txn *badger.Txn, fn func(b *Batch) error) (*Batch, error) {
	// A writer's batches tend to be alike: room for as many ops as the last
	// one saves growing (and copying) the op list op by op.
	ops := r.spareOps[:0]
	if cap(ops) < r.lastBatchOps {
		ops = make([]crdt.Op, 0, r.lastBatchOps)
	}
	r.spareOps = nil
	b := &Batch{r: r, txn: txn, recs: map[Ref]*crdt.Record{}, news: map[Ref]newRecord{}, ops: ops}
	if err := fn(b); err != nil {
		return nil, err
	}
	r.lastBatchOps = min(len(b.ops), r.opts.MaxWriteOps)
	if len(b.ops) > 0 {
		b.size = opsSize(b.ops)
		if n, max := b.size, r.opts.MaxWriteBytes; n > max {
			return nil, &ValidationError{Err: &LimitError{What: "bytes in one write", Size: n, Limit: max}}
		}
	}
	return b, nil
}

// writeBatch stores what b built in txn: its records, one outbox group,
// the clock.
func (r *Replica) writeBatch(txn *badger.Txn, b *Batch) error {
	// Sealed as written, or an unsealed group (outbox.go sealAtWrite).
	seq, err := r.sealAtWrite(txn, len(b.ops), b.size)
	if err != nil {
		return err
	}
	// A big batch's outbox group is packed on another goroutine while its
	// records are encoded here (both only read the ops); joined below
	// before either is stored, on every path.
	var packed chan packResult
	if len(b.ops) >= parallelPackOps {
		packed = make(chan packResult, 1)
		ops := b.ops
		go func() {
			v, err := encodeChange(&api.Change{Seq: seq, Ops: ops})
			packed <- packResult{v, err}
		}()
	}
	err = r.writeRecords(txn, b)
	var group []byte
	if packed != nil {
		res := <-packed
		if err == nil {
			group, err = res.b, res.err
		}
	} else if err == nil {
		group, err = encodeChange(&api.Change{Seq: seq, Ops: b.ops})
	}
	if err != nil {
		return err
	}
	if seq != 0 {
		err = putSealed(txn, seq, group)
	} else {
		err = r.appendPending(txn, group)
	}
	if err != nil {
		return err
	}
	return txn.Set(keyClock, u64Bytes(uint64(r.clock.Last())))
}

// parallelPackOps is the fewest ops whose outbox group writeBatch packs
// on a goroutine of its own.
const parallelPackOps = 256

// packResult is an outbox group packed by writeBatch's goroutine.
type packResult struct {
	b   []byte
	err error
}

// writeRecords stores the records b wrote in txn.
func (r *Replica) writeRecords(txn *badger.Txn, b *Batch) error {
	for _, ref := range b.order {
		if n, ok := b.news[ref]; ok {
			// A record created in the batch and not touched since: its
			// state is encoded from its ops, without building it.
			if v, ok := crdt.AppendNewState(nil, b.ops[n.start:n.end]); ok {
				if err := txn.Set(recordKey(ref), v); err != nil {
					return err
				}
				continue
			}
			if _, err := b.build(ref, n); err != nil {
				return err
			}
		}
		if err := putRecord(txn, b.recs[ref]); err != nil {
			return err
		}
	}
	return nil
}

// rewrite stores built batches in a transaction of their own.
func (r *Replica) rewrite(qs []*batchReq) error {
	return r.db.Update(func(txn *badger.Txn) error {
		for _, q := range qs {
			if err := r.writeBatch(txn, q.b); err != nil {
				return err
			}
		}
		return nil
	})
}

// Batch is a group of local writes stored together; see Replica.Batch. Its
// methods are those of Replica without the context, and Get reads the
// batch's own writes.
type Batch struct {
	r    *Replica
	txn  *badger.Txn
	recs map[Ref]*crdt.Record
	// news are the records the batch created and has not touched since,
	// not built: each is ops[start:end] applied to a new record (build
	// makes it when a later write or Get needs it, writeBatch encodes
	// its state straight from the ops).
	news  map[Ref]newRecord
	order []Ref // records written, in first-write order
	ops   []crdt.Op
	size  int // opsSize(ops), set once fn is done
	// slab holds the encoded short string values of the batch's creates,
	// one allocation for many (encodeValue).
	slab []byte
}

// slabSize is the size of a batch's value slabs, and maxSlabValue the
// longest string encodeValue puts in one.
const (
	slabSize     = 16 << 10
	maxSlabValue = 512
)

// encodeValue is crdt.EncodeValue, a short string put in the batch's
// slab rather than in an allocation of its own. Each value is capped to
// its length, so nothing appended to one can reach the next; values are
// never modified.
func (b *Batch) encodeValue(e any) (msgpack.RawMessage, error) {
	s, ok := e.(string)
	if !ok || len(s) > maxSlabValue {
		return crdt.EncodeValue(e)
	}
	if cap(b.slab)-len(b.slab) < 5+len(s) {
		b.slab = make([]byte, 0, slabSize)
	}
	n := len(b.slab)
	b.slab = crdt.AppendStringValue(b.slab, s)
	return b.slab[n:len(b.slab):len(b.slab)], nil
}

// newRecord is a record created in a batch: the batch's ops[start:end].
type newRecord struct{ start, end int }

// build makes the record created as n, applying its ops to a new record,
// and keeps it with the batch's other records.
func (b *Batch) build(ref Ref, n newRecord) (*crdt.Record, error) {
	rec := crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
	cb := crdt.NewBatch(rec)
	for i := n.start; i < n.end; i++ {
		if err := cb.Add(&b.ops[i]); err != nil {
			return nil, &ValidationError{Ref: ref, Field: b.ops[i].Field, Err: err}
		}
	}
	cb.Flush()
	delete(b.news, ref)
	b.recs[ref] = rec
	return rec, nil
}

// record returns the batch's working copy of ref: from an earlier write in
// the batch, from the store, or new for a create.
func (b *Batch) record(ref Ref, create bool) (*crdt.Record, error) {
	return b.recordOf(ref, create, false)
}

// recordOf is record; fresh says ref's ID was just drawn at random
// (NewID), so that no record can have it yet and the store is not read.
func (b *Batch) recordOf(ref Ref, create, fresh bool) (*crdt.Record, error) {
	rec, ok := b.recs[ref]
	if n, made := b.news[ref]; made {
		if create {
			return nil, &ValidationError{Ref: ref, Err: fmt.Errorf("record already exists")}
		}
		return b.build(ref, n)
	}
	if !ok && !fresh {
		var err error
		if rec, err = loadRecord(b.txn, ref); err != nil {
			return nil, err
		}
	}
	switch {
	case rec == nil && !create:
		return nil, fmt.Errorf("%s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, ErrNotFound)
	case rec != nil && create:
		return nil, &ValidationError{Ref: ref, Err: fmt.Errorf("record already exists")}
	case rec == nil:
		rec = crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
	}
	if !ok {
		b.recs[ref] = rec
		b.order = append(b.order, ref)
		// Every op this replica makes on the record must be newer than
		// every op the record holds: replicas take each writer's ops in ID
		// order (see package crdt). A new record holds none.
		if t := rec.MaxTime(); t != 0 {
			_ = b.r.clock.Update(t)
		}
	}
	return rec, nil
}

// apply validates op, applies it to rec and adds it to the batch.
func (b *Batch) apply(ref Ref, rec *crdt.Record, op crdt.Op) error {
	// Checked and applied in its place at the end of the batch's ops
	// (not copied to the heap on its own), and cut off if it fails.
	b.ops = append(b.ops, op)
	p := &b.ops[len(b.ops)-1]
	err := b.check(ref, p, len(b.ops), true, nil)
	if err == nil {
		if err = rec.Apply(p); err != nil {
			err = &ValidationError{Ref: ref, Field: p.Field, Err: err}
		}
	}
	if err != nil {
		b.ops[len(b.ops)-1] = crdt.Op{}
		b.ops = b.ops[:len(b.ops)-1]
	}
	return err
}

// check checks op, which the batch's ops hold n of with it, against the
// write limits and validates it, its record ID too if checkID is set; sf
// is op's field in the schema if the caller looked it up (see validate).
func (b *Batch) check(ref Ref, op *crdt.Op, n int, checkID bool, sf *schema.Field) error {
	if size, max := len(op.Value), b.r.opts.MaxValueBytes; size > max {
		return &ValidationError{Ref: ref, Field: op.Field, Err: &LimitError{What: "value", Field: op.Field, Size: size, Limit: max}}
	}
	if max := b.r.opts.MaxWriteOps; n > max {
		return &ValidationError{Ref: ref, Field: op.Field, Err: &LimitError{What: "ops in one write", Size: n, Limit: max}}
	}
	return b.r.validate(ref, op, checkID, sf)
}

// Get returns the record as the batch's writes so far leave it.
func (b *Batch) Get(ref Ref) (*Record, error) {
	rec, ok := b.recs[ref]
	if n, made := b.news[ref]; made {
		var err error
		if rec, err = b.build(ref, n); err != nil {
			return nil, err
		}
		ok = true
	}
	if !ok {
		var err error
		if rec, err = loadRecord(b.txn, ref); err != nil {
			return nil, err
		}
		if rec == nil {
			return nil, fmt.Errorf("%s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, ErrNotFound)
		}
	}
	return b.r.viewOf(rec.Clone()), nil
}

// Create is Replica.Create within the batch.
func (b *Batch) Create(where Ref, fields map[string]any) (Ref, error) {
	fresh := where.ID == ""
	if fresh {
		where.ID = NewID()
	}
	return where, b.create(where, fields, fresh)
}

// CreateWithID is Replica.CreateWithID within the batch.
func (b *Batch) CreateWithID(ref Ref, fields map[string]any) error {
	return b.create(ref, fields, false)
}

// create is CreateWithID; fresh says ref.ID is a new random ID (Create),
// which no stored record can have: 128 random bits do not collide.
func (b *Batch) create(ref Ref, fields map[string]any, fresh bool) error {
	r := b.r
	if ref.Team == "" || ref.Collection == "" || ref.ID == "" {
		return &ValidationError{Ref: ref, Err: fmt.Errorf("team, collection and id are required")}
	}
	if err := crdt.ValidateRecordID(ref.ID); err != nil {
		return &ValidationError{Ref: ref, Err: err}
	}
	names, vals := r.createNames(fields)
	defer clear(vals) // the Replica's, kept for the next create: no value stays in it
	typer, _ := r.opts.Validator.(FieldTyper)
	// With the schema as the validator, each field is looked up once, for
	// its CRDT type and to validate its ops (Field.ValidateOp), and the
	// look-ups and the required-on-create check are kept for the next
	// create of the same fields (createPlan).
	var sfs []*schema.Field
	if sc, ok := r.opts.Validator.(*schema.Schema); ok {
		p := r.createPlanFor(sc, ref.Collection, names)
		if len(p.missing) > 0 {
			return &ValidationError{Ref: ref, Missing: slices.Clone(p.missing)}
		}
		sfs, typer = p.fields, collectionTyper{p.coll}
	} else if cc, ok := r.opts.Validator.(CreateChecker); ok {
		// names may be reused (createNames): the checker gets a copy.
		if missing := cc.MissingOnCreate(ref.Collection, slices.Clone(names)); len(missing) > 0 {
			return &ValidationError{Ref: ref, Missing: missing}
		}
	}
	if err := b.checkNew(ref, fresh); err != nil {
		return err
	}
	// The record is new, so no op built here depends on another (none
	// names a pred). They are built and checked in place at the end of
	// the batch's ops, and the record is not built: it is kept as those
	// ops (b.news), its state encoded from them when the batch is stored,
	// and built only if a later write or Get in the batch needs it (the
	// same state either way, crdt.AppendNewState). If the create fails
	// its ops are cut off again and the record dropped: a failed create
	// leaves no trace in the batch.
	b.order = append(b.order, ref)
	start := len(b.ops)
	// The create's ops take consecutive timestamps reserved at once, one
	// an op of a field given one value (crdt.Clock.Reserve: one reading
	// of the wall clock a record, not one an op); an op beyond them (a
	// set or log field given several elements) takes the clock's next.
	// Unused ones (a field given an empty slice) are left as gaps.
	t0, reserved := r.clock.Reserve(len(names)), len(names)
	fail := func(err error) error {
		clear(b.ops[start:])
		b.ops = b.ops[:start]
		b.order = b.order[:len(b.order)-1]
		return err
	}
	for i, name := range names {
		if name == crdt.DeletedField {
			return fail(&ValidationError{Ref: ref, Field: name, Err: fmt.Errorf("reserved field")})
		}
		ft := crdt.Register
		var sf *schema.Field
		if sfs != nil {
			sf = sfs[i]
		}
		switch {
		case sf != nil:
			ft = sf.CRDT
		case typer != nil:
			if t, ok := typer.FieldType(ref.Collection, name); ok {
				ft = t
			}
		}
		elems := vals[i : i+1]
		if ft != crdt.Register {
			if s, ok := asSlice(vals[i]); ok {
				elems = s
			}
		}
		for _, e := range elems {
			v, err := b.encodeValue(e)
			if err != nil {
				return fail(&ValidationError{Ref: ref, Field: name, Err: err})
			}
			id := crdt.OpID{Time: t0 + crdt.Timestamp(len(b.ops)-start), Replica: r.id}
			if len(b.ops)-start >= reserved {
				id = r.nextID()
			}
			// What rec.Add, rec.Append or rec.Write would return on a
			// new record: no pred.
			kind := crdt.KindWrite
			switch ft {
			case crdt.Set:
				kind = crdt.KindAdd
			case crdt.Log:
				kind = crdt.KindAppend
			}
			b.ops = append(b.ops, crdt.Op{ID: id, Team: ref.Team, Collection: ref.Collection, Record: ref.ID, Field: name, Kind: kind, Value: v})
			op := &b.ops[len(b.ops)-1]
			// The record ID was checked above, once for all its ops.
			if err := b.check(ref, op, len(b.ops), false, sf); err != nil {
				return fail(err)
			}
		}
	}
	b.news[ref] = newRecord{start: start, end: len(b.ops)}
	return nil
}

// checkNew fails unless ref can be created in the batch: no record of
// the batch has it, nor (unless fresh, a new random ID) a stored one.
func (b *Batch) checkNew(ref Ref, fresh bool) error {
	_, ok := b.recs[ref]
	if _, made := b.news[ref]; made {
		ok = true
	}
	if !ok && !fresh {
		_, err := b.txn.Get(recordKey(ref))
		switch {
		case err == nil:
			ok = true
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
	}
	if ok {
		return &ValidationError{Ref: ref, Err: fmt.Errorf("record already exists")}
	}
	return nil
}

// createNames returns the names of fields, sorted, and their values in
// that order: a create's ops are built in name order. Creates of one form
// name the same fields, so the last create's sorted names are reused when
// fields has exactly those, each field looked up once for that and its
// value. Both slices are the Replica's, reused by the next create (guarded
// by wmu, as every batch is built).
func (r *Replica) createNames(fields map[string]any) ([]string, []any) {
	vals := r.lastVals[:0]
	if names := r.lastNames; len(names) == len(fields) {
		same := true
		for _, name := range names {
			v, ok := fields[name]
			if !ok {
				same = false
				break
			}
			vals = append(vals, v)
		}
		if same {
			r.lastVals = vals
			return names, vals
		}
		vals = vals[:0]
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		vals = append(vals, fields[name])
	}
	r.lastNames, r.lastVals = names, vals
	return names, vals
}

// createPlan is what a create of a schema collection's fields looks up
// in the schema: the collection (nil if unknown), each field (aligned
// with names, nil where the collection has none of that name) and the
// fields required on create that names misses. The schema does not
// change, so a plan holds for every create of the same names (the same
// slice, createNames) in the same collection.
type createPlan struct {
	schema     *schema.Schema
	collection string
	names      []string
	coll       *schema.Collection
	fields     []*schema.Field
	missing    []string
}

// createPlanFor returns the plan of a create of names in collection,
// the last one if it is for the same (guarded by wmu).
func (r *Replica) createPlanFor(sc *schema.Schema, collection string, names []string) *createPlan {
	if p := r.lastPlan; p != nil && p.schema == sc && p.collection == collection &&
		len(p.names) == len(names) && (len(names) == 0 || &p.names[0] == &names[0]) {
		return p
	}
	p := &createPlan{schema: sc, collection: collection, names: names}
	p.coll, _ = sc.Collection(collection) // nil if unknown: ValidateOp says so
	p.fields = make([]*schema.Field, len(names))
	if p.coll != nil {
		for i, name := range names {
			p.fields[i], _ = p.coll.Field(name)
		}
	}
	p.missing = sc.MissingOnCreate(collection, names)
	r.lastPlan = p
	return p
}

// Set is Replica.Set within the batch.
func (b *Batch) Set(ref Ref, field string, value any) error {
	if value == nil {
		return &ValidationError{Ref: ref, Field: field, Err: fmt.Errorf("nil value: use Clear to clear a field")}
	}
	return b.set(ref, field, value)
}

// Clear is Replica.Clear within the batch.
func (b *Batch) Clear(ref Ref, field string) error { return b.set(ref, field, nil) }

func (b *Batch) set(ref Ref, field string, value any) error {
	if err := b.checkSet(ref, field); err != nil {
		return err
	}
	return b.fieldWrite(ref, field, value, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return b.r.setOp(rec, id, field, v)
	})
}

// Resolve is Replica.Resolve within the batch.
func (b *Batch) Resolve(ref Ref, field string, value any) error {
	if err := b.checkResolve(ref, field); err != nil {
		return err
	}
	return b.fieldWrite(ref, field, value, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Write(id, field, v)
	})
}

// Add is Replica.Add within the batch.
func (b *Batch) Add(ref Ref, field string, elem any) error {
	return b.fieldWrite(ref, field, elem, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Add(id, field, v)
	})
}

// Remove is Replica.Remove within the batch.
func (b *Batch) Remove(ref Ref, field string, elem any) error {
	return b.fieldWrite(ref, field, elem, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Remove(id, field, v)
	})
}

// Append is Replica.Append within the batch.
func (b *Batch) Append(ref Ref, field string, value any) error {
	return b.fieldWrite(ref, field, value, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Append(id, field, v)
	})
}

// Delete is Replica.Delete within the batch.
func (b *Batch) Delete(ref Ref) error {
	rec, err := b.record(ref, false)
	if err != nil {
		return err
	}
	return b.apply(ref, rec, rec.Delete(b.r.nextID()))
}

// Restore is Replica.Restore within the batch.
func (b *Batch) Restore(ref Ref) error {
	rec, err := b.record(ref, false)
	if err != nil {
		return err
	}
	return b.apply(ref, rec, rec.Restore(b.r.nextID()))
}

func (b *Batch) fieldWrite(ref Ref, field string, value any,
	build func(*crdt.Record, crdt.OpID, msgpack.RawMessage) crdt.Op) error {
	if field == crdt.DeletedField {
		return &ValidationError{Ref: ref, Field: field, Err: fmt.Errorf("use Delete or Restore")}
	}
	v, err := crdt.EncodeValue(value)
	if err != nil {
		return &ValidationError{Ref: ref, Field: field, Err: err}
	}
	rec, err := b.record(ref, false)
	if err != nil {
		return err
	}
	if rec.Deleted() {
		return fmt.Errorf("write %s to %s/%s/%s: %w", field, ref.Team, ref.Collection, ref.ID, ErrDeleted)
	}
	return b.apply(ref, rec, build(rec, b.r.nextID(), v))
}

func (r *Replica) nextID() crdt.OpID { return crdt.OpID{Time: r.clock.Now(), Replica: r.id} }

// validate checks op's shape, its record ID if checkID is set, and
// validates it: with sf, op's field in the schema the validator is (the
// caller looked it up), through sf itself, the same answer as the
// validator's without its look-ups.
func (r *Replica) validate(ref Ref, op *crdt.Op, checkID bool, sf *schema.Field) error {
	if err := op.Validate(); err != nil {
		return &ValidationError{Ref: ref, Field: op.Field, Err: err}
	}
	// The server refuses other IDs (invalid_record_id): catch them here,
	// before the write is stored and queued.
	if checkID {
		if err := crdt.ValidateRecordID(op.Record); err != nil {
			return &ValidationError{Ref: ref, Err: err}
		}
	}
	switch {
	case sf != nil:
		if err := sf.ValidateOp(op); err != nil {
			return &ValidationError{Ref: ref, Field: op.Field, Err: err}
		}
	case r.opts.Validator != nil:
		if err := r.opts.Validator.ValidateOp(op); err != nil {
			return &ValidationError{Ref: ref, Field: op.Field, Err: err}
		}
	}
	return nil
}

func loadRecord(txn *badger.Txn, ref Ref) (*crdt.Record, error) {
	v, err := get(txn, recordKey(ref))
	if err != nil || v == nil {
		return nil, err
	}
	rec, err := crdt.UnmarshalRecord(v)
	if err != nil {
		return nil, fmt.Errorf("stored record %s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, err)
	}
	return rec, nil
}

func putRecord(txn *badger.Txn, rec *crdt.Record) error {
	b, err := crdt.MarshalRecord(rec)
	if err != nil {
		return err
	}
	return txn.Set(recordKey(Ref{Team: rec.Team, Collection: rec.Collection, ID: rec.ID}), b)
}

// marshalCompact returns the msgpack encoding of v with integers in their
// smallest form, the form of sync request bodies and stored changes.
func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	if req, ok := v.(*api.SyncRequest); ok && len(req.Packed) > 0 {
		// A packed push is its blocks and a few hundred bytes: room for
		// them at once, not grown (and copied) from nothing.
		n := 512 + len(req.Cursor)
		for _, b := range req.Packed {
			n += 5 + len(b)
		}
		buf.Grow(n)
	}
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// collectionTyper types the fields of one schema collection (nil: an
// unknown one, whose fields are untyped).
type collectionTyper struct{ c *schema.Collection }

func (t collectionTyper) FieldType(_, field string) (crdt.FieldType, bool) {
	if t.c == nil {
		return 0, false
	}
	f, ok := t.c.Field(field)
	if !ok {
		return 0, false
	}
	return f.CRDT, true
}

func asSlice(v any) ([]any, bool) {
	switch s := v.(type) {
	case []any:
		return s, true
	case []string:
		out := make([]any, len(s))
		for i := range s {
			out[i] = s[i]
		}
		return out, true
	}
	return nil, false
}
