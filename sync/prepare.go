package sync

import (
	"context"
	"fmt"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// A sync's push in two steps (docs/PROTOCOL.md "Pipelined pushes"): a
// prepare step that reads no stored state (every op's precheck, the
// validator's verdict, the runs merged ahead and the log entry's encoding:
// prechecks), and a commit step that queues the prepared request for the
// committer and waits for it. Sync and Push take both steps in one call.
// The server (package server) takes them apart for a pipelined request:
// it prepares it while the request ahead of it, of the same device, is
// still being committed, and commits it once that one is decided.
//
// Preparing early is safe because nothing prepared depends on what is
// stored, and the committer checks, in its own transaction, everything
// that does: a run merged ahead is taken only if the transaction still
// holds its record blank, as a new record's, untouched by the change so
// far (admission.takeRun), and is queued op by op otherwise; the ops'
// stored-state checks (purge markers, duplicates, preds, owners, quota,
// clock skew) all run in admitChangeRuns. The caller, the validator and
// the bounds a prepared request was checked with do not change between
// the two steps (an Engine's are fixed when it is opened).

// PreparedSync is a sync request with the stateless part of its push done
// (PrepareSync), to be handled by SyncPrepared. It is used once.
type PreparedSync struct {
	c    Caller
	req  *api.SyncRequest
	push *request // req.Changes prepared; nil if Sync would push none of them

	// AfterPush, if set, is called once the request's push has been
	// decided (committed, refused or failed), before its page is pulled;
	// not at all if the request pushes nothing.
	AfterPush func()
}

// PrepareSync does, for req of caller c, the work of Sync that reads no
// stored state: the stateless checks of every pushed op and the runs
// merged ahead. It may run any time before SyncPrepared (while a request
// ahead of it is still being committed): see the comment above. A
// request Sync would refuse or push nothing from is prepared as nothing;
// SyncPrepared refuses it as Sync does.
func (e *Engine) PrepareSync(c Caller, req *api.SyncRequest) *PreparedSync {
	p := &PreparedSync{c: c, req: req}
	if req == nil || req.Protocol != api.ProtocolVersion || req.Replica != c.Replica || c.Replica.IsZero() ||
		len(req.Changes) == 0 || e.staleEpoch(req) {
		return p
	}
	p.push = e.preparePush(c, req.Changes, req.OpsValidated())
	return p
}

// SyncPrepared handles p's request exactly as Sync would have: the push,
// if prepared, with the work PrepareSync did.
func (e *Engine) SyncPrepared(ctx context.Context, p *PreparedSync) (*api.SyncResponse, error) {
	return e.syncPrepared(ctx, p)
}

// pushFor returns the prepared push if it was prepared from changes (the
// same slice), nil otherwise.
func (p *PreparedSync) pushFor(changes []api.Change) *request {
	r := p.push
	if r == nil || len(r.changes) != len(changes) || len(changes) == 0 || &r.changes[0] != &changes[0] {
		return nil
	}
	return r
}

func (p *PreparedSync) pushed() {
	if p.AfterPush != nil {
		p.AfterPush()
	}
}

// preparePush is the stateless part of Push: a push request of c with
// every op prechecked (prechecks), ready for the committer. shaped: every
// op of changes has passed crdt.Op.Validate already.
func (e *Engine) preparePush(c Caller, changes []api.Change, shaped bool) *request {
	c.Teams = teamSet(c.Teams)
	r := &request{kind: reqPush, caller: c, changes: changes}
	r.pre, r.val, r.ahead, r.enc = e.prechecks(&r.caller, changes, shaped)
	r.changeWeights() // stateless too: the committer reads them (writeWeight)
	return r
}

// commitPush is Push with its stateless part done already (r, from
// preparePush(c, changes, false)) or not (nil: it is done here).
func (e *Engine) commitPush(ctx context.Context, c Caller, changes []api.Change, r *request) ([]api.ChangeResult, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if c.Replica.IsZero() {
		return nil, fmt.Errorf("%w: caller has no replica", ErrDeviceMismatch)
	}
	if len(changes) == 0 {
		return nil, nil
	}
	if r == nil {
		r = e.preparePush(c, changes, false)
	}
	if err := e.submit(ctx, r); err != nil {
		return nil, fmt.Errorf("push %d changes: %w", len(changes), err)
	}
	return r.results, nil
}

// opValidator runs the engine's Validator on a push's ops, in order. With
// a *schema.Schema it looks each op's field up (two map reads) only when
// the op before at the same position of its record's run named another
// one: a device's batch of new records names their fields in one order,
// so a push of records of 30 fields looks up 30 fields, not one per op.
// A field found is checked with schema.Field.ValidateOp, which gives the
// answer Schema.ValidateOp gives once it has found the field; every op
// it does not find (unknown collection or field, the delete register)
// goes to Schema.ValidateOp, for its error.
type opValidator struct {
	v Validator
	s *schema.Schema // v, if it is one; nil: every op goes to v

	pos   int      // the op's position in its record's run
	prev  *crdt.Op // the op before, nil at the start
	slots [maxValidatorSlots]struct {
		coll, name string
		f          *schema.Field
	}
}

// maxValidatorSlots bounds the positions opValidator remembers a field
// at: a record's run past it looks its later fields up op by op.
const maxValidatorSlots = 64

func newOpValidator(v Validator) *opValidator {
	s, _ := v.(*schema.Schema)
	return &opValidator{v: v, s: s}
}

// validate returns the Validator's verdict on op, the op after the one
// validate was last called with (or a precheck refused).
func (m *opValidator) validate(op *crdt.Op) error {
	if m.prev != nil && sameRecord(m.prev, op) {
		m.pos++
	} else {
		m.pos = 0
	}
	m.prev = op
	if m.s == nil {
		return m.v.ValidateOp(op)
	}
	if op.Field == crdt.DeletedField || m.pos >= maxValidatorSlots {
		return m.s.ValidateOp(op)
	}
	sl := &m.slots[m.pos]
	if sl.f == nil || sl.name != op.Field || sl.coll != op.Collection {
		f, ok := m.s.Field(op.Collection, op.Field)
		if !ok {
			return m.s.ValidateOp(op)
		}
		sl.coll, sl.name, sl.f = op.Collection, op.Field, f
	}
	return sl.f.ValidateOp(op)
}
