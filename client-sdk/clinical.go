package client

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/crdt"
)

// Errors of the clinical-conflict rules (see Conflicts in the package doc).
var (
	// ErrInConflict: a plain Set on a clinical field in conflict. Nothing
	// was stored. The app must show the concurrent values (Get, Conflicts)
	// to someone allowed to settle them, who calls Resolve.
	ErrInConflict = errors.New("client: clinical field in conflict; resolve it instead")
	// ErrResolveForbidden: a Resolve of a conflict on a clinical field by a
	// user whose role the schema's settled_by does not list (or by a
	// replica not signed in). Nothing was stored; the server would refuse
	// it with api.CodeResolveForbidden.
	ErrResolveForbidden = errors.New("client: role may not settle this clinical conflict")
)

// ClinicalRules is optionally implemented by a Validator to say which
// fields are clinical and which roles may settle their conflicts;
// schema.Default() satisfies it. Without it the replica applies no
// clinical rule.
type ClinicalRules interface {
	Clinical(collection, field string) bool
	MaySettle(collection, field, role string) bool
}

func (r *Replica) rules() ClinicalRules {
	cr, _ := r.opts.Validator.(ClinicalRules)
	return cr
}

// setOp builds a plain Set. Outside a conflict it overwrites the value the
// user sees. In a conflict it overwrites only the values this replica
// wrote itself, so no other author's concurrent value leaves the review;
// on a clinical field in conflict Set is refused before this (checkSet).
func (r *Replica) setOp(rec *crdt.Record, id crdt.OpID, field string, v msgpack.RawMessage) crdt.Op {
	op := rec.Write(id, field, v)
	if f := rec.Field(field); f.Conflict() {
		op.Pred = nil
		for _, e := range f.Entries {
			if e.ID.Replica == r.id {
				op.Pred = append(op.Pred, e.ID)
			}
		}
	}
	return op
}

// checkSet refuses a plain Set on a clinical field in conflict.
func (b *Batch) checkSet(ref Ref, field string) error {
	rules := b.r.rules()
	if rules == nil || !rules.Clinical(ref.Collection, field) {
		return nil
	}
	rec, err := b.record(ref, false)
	if err != nil {
		return err
	}
	if rec.Field(field).Conflict() {
		return fmt.Errorf("set %s on %s/%s/%s: %w", field, ref.Team, ref.Collection, ref.ID, ErrInConflict)
	}
	return nil
}

// checkResolve refuses a Resolve of a clinical conflict by a role the
// schema does not allow, with the role of the signed-in user.
func (b *Batch) checkResolve(ref Ref, field string) error {
	rules := b.r.rules()
	if rules == nil || !rules.Clinical(ref.Collection, field) {
		return nil
	}
	rec, err := b.record(ref, false)
	if err != nil {
		return err
	}
	if !rec.Field(field).Conflict() {
		return nil
	}
	role, err := storedRole(b.txn)
	if err != nil {
		return err
	}
	if !rules.MaySettle(ref.Collection, field, role) {
		return fmt.Errorf("resolve %s on %s/%s/%s as %q: %w", field, ref.Team, ref.Collection, ref.ID, role, ErrResolveForbidden)
	}
	return nil
}

// storedRole returns the signed-in user's role from the stored tokens, or
// "" when signed out.
func storedRole(txn *badger.Txn) (string, error) {
	v, err := get(txn, keyTokens)
	if err != nil || v == nil {
		return "", err
	}
	var t tokens
	if err := msgpack.Unmarshal(v, &t); err != nil {
		return "", fmt.Errorf("stored tokens: %w", err)
	}
	return t.User.Role, nil
}

// MaySettle reports whether the signed-in user may settle a conflict on
// the field: always for a field that is not clinical, else when the
// schema's settled_by lists the user's role. Apps use it to offer Resolve
// or to route the conflict to a coordinator.
func (r *Replica) MaySettle(collection, field string) (bool, error) {
	rules := r.rules()
	if rules == nil || !rules.Clinical(collection, field) {
		return true, nil
	}
	var role string
	err := r.view(func(txn *badger.Txn) error {
		var err error
		role, err = storedRole(txn)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("client: %w", err)
	}
	return rules.MaySettle(collection, field, role), nil
}
