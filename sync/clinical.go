package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/store"
)

// ClinicalRules tell the engine which fields are clinical and which roles
// may settle a conflict on them; *schema.Schema satisfies it.
type ClinicalRules interface {
	Clinical(collection, field string) bool
	MaySettle(collection, field, role string) bool
}

var _ ClinicalRules = (*schema.Schema)(nil)

func rulesOf(opts Options) ClinicalRules {
	if opts.Rules != nil {
		return opts.Rules
	}
	r, _ := opts.Validator.(ClinicalRules)
	return r
}

// clinicalCheck applies the clinical-conflict rules to a write that passed
// every other check. They bite only on a register write to a clinical
// field the server holds in conflict (two or more live values), and only
// when its pred names some of those values:
//
//   - pred covers every live value: the op settles the conflict (a
//     resolving op); it is refused with api.CodeResolveForbidden unless
//     role is among the field's settled_by;
//   - pred covers some, among them a value another replica wrote: an
//     ordinary write (made before its device saw the whole conflict, or by
//     a client that ignores the rule) that would take another author's
//     value out of the review; it is quarantined with
//     api.CodeConflictInReview and the conflict stays as it was;
//   - pred covers only values the pushing device wrote itself: the device
//     replaces its own value; merged.
//
// A write naming no live value only adds a value to the review: merged.
func (a *admission) clinicalCheck(v admissionView, op *crdt.Op, replica crdt.ReplicaID, role string) (*refusal, error) {
	rules := a.rules
	if rules == nil || op.Kind != crdt.KindWrite || len(op.Pred) == 0 || op.Field == crdt.DeletedField ||
		!rules.Clinical(op.Collection, op.Field) {
		return nil, nil
	}
	rec, err := v.Record(op.Team, op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	f := rec.Field(op.Field)
	if !f.Conflict() {
		return nil, nil
	}
	covered, others := 0, false
	for _, e := range f.Entries {
		if slices.Contains(op.Pred, e.ID) {
			covered++
			others = others || e.ID.Replica != replica
		}
	}
	switch {
	case covered == len(f.Entries):
		if rules.MaySettle(op.Collection, op.Field, role) {
			return nil, nil
		}
		return &refusal{code: api.CodeResolveForbidden, detail: fmt.Sprintf(
			"%s.%s is clinical: its conflict may be settled only by %s, not by role %q", op.Collection, op.Field, settlers(rules, op), role)}, nil
	case others:
		return &refusal{code: api.CodeConflictInReview, quarantined: true, detail: fmt.Sprintf(
			"%s.%s is clinical and in conflict: this write would overwrite %d of its %d concurrent values, not all; settle the conflict instead",
			op.Collection, op.Field, covered, len(f.Entries))}, nil
	}
	return nil, nil
}

// settlers names who may settle the op's field, for messages.
func settlers(rules ClinicalRules, op *crdt.Op) string {
	if s, ok := rules.(*schema.Schema); ok {
		return fmt.Sprint(s.SettledBy(op.Collection, op.Field))
	}
	return "the roles the schema allows"
}

// replacements returns the stored states of the records for which an op of
// changes was refused by a clinical rule (see api.SyncResponse.Replace).
// Those ops passed the team checks, so the records are the caller's.
func (e *Engine) replacements(ctx context.Context, changes []api.Change, results []api.ChangeResult) ([]crdt.RecordBytes, error) {
	var refs []api.RecordRef
	for i, r := range results {
		if i >= len(changes) || changes[i].Seq != r.Seq {
			continue
		}
		for _, o := range r.Ops {
			if o.Code != api.CodeResolveForbidden && o.Code != api.CodeConflictInReview || o.Index < 0 || o.Index >= len(changes[i].Ops) {
				continue
			}
			op := &changes[i].Ops[o.Index]
			ref := api.RecordRef{Team: op.Team, Collection: op.Collection, ID: op.Record}
			if !slices.Contains(refs, ref) {
				refs = append(refs, ref)
			}
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	var out []crdt.RecordBytes
	err := e.view(ctx, func(txn store.Tx) error {
		for _, ref := range refs {
			val, err := txn.Get(store.RecordKey(ref.Team, ref.Collection, ref.ID))
			if errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			_, b, err := store.DecodeRecordValue(val)
			out = append(out, crdt.RecordBytes(b))
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restate refused records: %w", err)
	}
	return out, nil
}
